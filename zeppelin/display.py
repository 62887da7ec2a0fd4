"""How a note shows a table or a figure: one small object per target, so a paragraph's code is the same
in Zeppelin and in Jupyter (``show.table(frame)``, ``show.png(png_bytes)``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MAX_ROWS = 1000    # Zeppelin's zeppelin.spark.maxResult default; Jupyter shows the same head


def _pandas(frame: Any):
    """A pandas frame for a Spark DataFrame (its first MAX_ROWS rows) or the frame itself."""
    if hasattr(frame, "toPandas"):
        return frame.limit(MAX_ROWS).toPandas()
    return frame


class ZeppelinDisplay:
    """Tables through Zeppelin's own ``z.show`` (``%table``), figures as ``%html`` images."""

    def __init__(self, z: Any):
        self.z = z

    def table(self, frame: Any) -> None:
        self.z.show(_pandas(frame))
        print()   # an empty line ends a %table: what follows is a new output block

    def png(self, data: bytes) -> None:
        from .analysis import png_html

        print(png_html(data))
        print()


class JupyterDisplay:
    def table(self, frame: Any) -> None:
        from IPython.display import display

        display(_pandas(frame).head(MAX_ROWS))

    def png(self, data: bytes) -> None:
        from IPython.display import Image, display

        display(Image(data=data, format="png"))


PROJECT = Path(__file__).resolve().parent.parent


def param(name: str, default: str, project: Path = PROJECT) -> str:
    """A note parameter's default: ``CTR_NOTES_<NAME>`` from the environment, else ``default``. A relative
    default that is not below the current directory but is below the project's checkout (Jupyter starts
    in ``zeppelin/notebooks/``; ``make demo`` writes ``runs/demo`` at the top) is given from there."""
    value = os.environ.get(f"CTR_NOTES_{name.upper()}")
    if value is not None:
        return value
    if default and not os.path.isabs(default) and "://" not in default and not os.path.exists(default):
        candidate = project / default
        if candidate.exists():
            return str(candidate)
    return default


def notebook_spark():
    """The notebook's Spark session: the active one (EMR Studio, pyspark kernels), else a local one
    with the project's defaults (``CTR_NOTES_MASTER`` overrides the master, e.g. ``local[2]``)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from ctr_pipeline.schema import SparkConfig
    from ctr_pipeline.spark import get_session

    return get_session(SparkConfig(log_level="ERROR"), master=os.environ.get("CTR_NOTES_MASTER"))

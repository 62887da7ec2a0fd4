"""EMR 7 cluster definitions as validated data (definition, parse, validate, iam, mrjob_conf,
instance_types), the bootstrap action, and the launcher (launcher, steps, cli): see emr_configs/README.md."""

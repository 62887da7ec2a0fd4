"""Feature stage: raw columns to a sparse ``features`` vector, fitted on the train split only."""

"""udatasets: raw records of any shape -> the unified schema, validated, cleaned, de-duplicated."""

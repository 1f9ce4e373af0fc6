"""An example application: a shop that imports its product catalogue from CSV files."""

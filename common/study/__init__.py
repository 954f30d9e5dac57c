"""The proxy study: which genotypes and their measurements (measure), rank statistics (stats), the report and its
decision rule (report), and figures."""

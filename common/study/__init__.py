"""The proxy study: which genotypes and their measurements (measure), study.csv's rows (columns), rank statistics
(stats), correlations.json and its decision rule (analysis), the printed table and report.md (report), and figures."""

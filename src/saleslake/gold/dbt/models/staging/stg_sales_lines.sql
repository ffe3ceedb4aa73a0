-- Typed view over silver.sales_lines: the columns gold uses, with their contract types,
-- and line_hash, the fingerprint fact_sales keeps so an incremental build finds the lines
-- whose content changed (macros/staging.sql). Computed only when selected.
{{ sales_lines_select(source('silver', 'sales_lines')) }}

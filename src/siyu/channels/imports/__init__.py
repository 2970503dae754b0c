"""File imports: Tmall, JD and POS exports (CSV or Excel, UTF-8 or GBK) through the ingest pipeline."""

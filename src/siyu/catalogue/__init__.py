"""The brand's product catalogue: SKUs with names, categories and prices (imported from exports)."""

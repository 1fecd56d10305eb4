"""Words and where they come from: word lists, tables, the catalogue, and counting them."""

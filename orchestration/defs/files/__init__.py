"""The CSV drops slice: share-price files -> dlt -> `raw_files.share_prices`, one partition per file."""

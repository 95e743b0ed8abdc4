"""The NASA NeoWs slice: the feed loaded by dlt into `raw_nasa`, one daily partition per feed day."""

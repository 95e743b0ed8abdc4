"""Session fixtures start each real component once (PostgreSQL, the NeoWs replay server); every test gets its own
temp warehouse. Each source's fixtures live in their own module, registered here."""

pytest_plugins = ["tests.fixtures_shop", "tests.fixtures_nasa", "tests.fixtures_s3"]

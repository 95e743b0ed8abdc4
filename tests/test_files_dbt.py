"""The share-price model on the demo drops: one row per trading date, and where two drops hold the same date, the
later drop file wins. Expected values are computed in Python from the raw rows."""

from tests.support import query


def test_the_daily_mart_holds_the_price_of_the_latest_drop_per_trading_date(demo_run):
    winners: dict[str, tuple[str, str]] = {}
    for trading_date, price, source_file in query(
        demo_run.warehouse, "select date, share_price, _source_file from raw_files.share_prices order by _source_file"
    ):
        winners[trading_date.replace("/", "-")] = (price, source_file)
    assert winners
    marts = query(demo_run.warehouse, "select trading_date, share_price, source_file from marts.fct_share_prices_daily")
    assert {str(day): (f"{price:.4f}", file) for day, price, file in marts} == winners

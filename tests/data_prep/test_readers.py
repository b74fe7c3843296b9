"""Readers of the four source formats: pure line parsers, discovery errors, and Ray reads of real layouts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cprec.core.errors import CPRecError
from cprec.data_prep import readers
from cprec.data_prep.readers import Reject, Skip, SourceConfig

MS_2020 = 1_600_000_000_000


def write(path: Path, lines: list[str | bytes], gz: bool = False) -> Path:
    data = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def rows_by_line(dataset) -> dict[tuple[str, int], dict]:
    return {(Path(r["source_file"]).name, r["line"]): r for r in dataset.take_all()}


# ----------------------------------------------------------------------------- pure parsers


def test_amazon2023_event_and_item():
    line = json.dumps(
        {"user_id": "AG1", "parent_asin": "B01", "asin": "B02", "rating": 4.0, "timestamp": MS_2020}
    )
    assert readers.parse_amazon2023_event(line) == ("AG1", "B01", MS_2020)
    meta = {
        "parent_asin": "B01",
        "title": "Sage Linen Pillow",
        "store": "Hearthline",
        "categories": ["Home & Kitchen", "Bedding", "Throw Pillows"],
        "description": ["Soft.", "Washable."],
        "details": {"Brand": "Other"},
    }
    assert readers.parse_amazon2023_item(json.dumps(meta)) == (
        "B01",
        "Sage Linen Pillow",
        "Hearthline",
        "Throw Pillows",
        "Soft. Washable.",
    )
    # store missing: the brand in details stands in; empty categories and description are absent, not ''.
    bare = {
        "parent_asin": "B01",
        "title": "X",
        "store": None,
        "categories": [],
        "description": [],
        "details": {"Brand": "B"},
    }
    assert readers.parse_amazon2023_item(json.dumps(bare)) == ("B01", "X", "B", None, None)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"user_id": "A", "parent_asin": "B", "timestamp": 16', "malformed_json"),
        ("[1, 2]", "malformed_json"),
        ('{"parent_asin": "B", "timestamp": 1600000000000}', "missing_field:user_id"),
        ('{"user_id": "  ", "parent_asin": "B", "timestamp": 1600000000000}', "missing_field:user_id"),
        ('{"user_id": "A", "timestamp": 1600000000000}', "missing_field:parent_asin"),
        ('{"user_id": "A", "parent_asin": ["B"], "timestamp": 1600000000000}', "mistyped_field:parent_asin"),
        ('{"user_id": "A", "parent_asin": "B"}', "missing_field:timestamp"),
        ('{"user_id": "A", "parent_asin": "B", "timestamp": "soon"}', "mistyped_field:timestamp"),
        ('{"user_id": "A", "parent_asin": "B", "timestamp": true}', "mistyped_field:timestamp"),
        # seconds where milliseconds belong land in 1970: impossible
        ('{"user_id": "A", "parent_asin": "B", "timestamp": 1600000000}', "impossible_timestamp"),
        ('{"user_id": "A", "parent_asin": "B", "timestamp": 9999999999999}', "impossible_timestamp"),
    ],
)
def test_amazon2023_event_rejects(line, reason):
    with pytest.raises(Reject, match=f"^{reason}$"):
        readers.parse_amazon2023_event(line)


def test_amazon2018_event_and_item():
    review = {"reviewerID": "R1", "asin": "0001", "overall": 5.0, "unixReviewTime": 1_600_000_000}
    assert readers.parse_amazon2018_event(json.dumps(review)) == ("R1", "0001", MS_2020)
    meta = {
        "asin": "0001",
        "title": "T",
        "brand": "Br",
        "category": ["Books", "Mystery", ""],
        "description": "D",
    }
    assert readers.parse_amazon2018_item(json.dumps(meta)) == ("0001", "T", "Br", "Mystery", "D")
    with pytest.raises(Reject, match="impossible_timestamp"):  # milliseconds where seconds belong
        readers.parse_amazon2018_event(json.dumps({**review, "unixReviewTime": MS_2020}))
    with pytest.raises(Reject, match="missing_field:reviewerID"):
        readers.parse_amazon2018_event(json.dumps({"asin": "1", "unixReviewTime": 1_600_000_000}))


def test_recbole_parsers():
    columns = readers.recbole_columns("user_id:token\titem_id:token\trating:float\ttimestamp:float")
    parse = readers.make_recbole_event_parser(columns)
    assert parse("u1\ti1\t5\t1600000000.5") == ("u1", "i1", MS_2020 + 500)
    with pytest.raises(Reject, match="wrong_column_count:3"):
        parse("u1\ti1\t5")
    with pytest.raises(Reject, match="mistyped_field:timestamp"):
        parse("u1\ti1\t5\tyesterday")
    with pytest.raises(Reject, match="missing_field:user_id"):
        parse("\ti1\t5\t1600000000")
    item_columns = readers.recbole_columns(
        "item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq"
    )
    parse_item = readers.make_recbole_item_parser(item_columns)
    assert parse_item("i1\tSage Pillow\tHearthline\t'Home', 'Throw Pillows'") == (
        "i1",
        "Sage Pillow",
        "Hearthline",
        "Throw Pillows",
        None,
    )
    assert parse_item("i2\t\t\t") == ("i2", None, None, None, None)
    with pytest.raises(CPRecError, match="lacks item_id"):
        readers.make_recbole_event_parser(readers.recbole_columns("user_id:token\ttimestamp:float"))
    with pytest.raises(CPRecError, match="field:type"):
        readers.recbole_columns("user_id\titem_id")


RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def test_retail_parsers():
    columns = readers.retail_columns(RETAIL_HEADER)
    event = readers.make_retail_event_parser(columns)
    item = readers.make_retail_item_parser(columns)
    line = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom"
    assert event(line) == ("17850", "85123A", 1291191960000)
    assert item(line) == ("85123A", "White Hanging Heart T-Light Holder", None, None, None)
    iso = '536366,22633,"HAND WARMER, UNION JACK",6,2010-12-01 08:28:00,1.85,17850,United Kingdom'
    assert event(iso) == ("17850", "22633", 1291192080000)
    assert item(iso)[1] == "Hand Warmer, Union Jack"
    skips = {
        "C536379,85123A,WHITE HEART,-1,12/1/2010 9:41,2.55,17850,United Kingdom": "cancellation",
        "536370,POST,POSTAGE,3,12/1/2010 8:45,18,12583,France": "non_product_code",
        "536414,22139,,56,12/1/2010 11:52,0,,United Kingdom": "no_customer_id",
        "536589,21777,damaged,-10,12/1/2010 16:50,0,,United Kingdom": "non_positive_quantity",
    }
    for text, reason in skips.items():
        with pytest.raises(Skip, match=reason):
            event(text)
    rejects = {
        "536365,85123A,WHITE HEART,6,12/1/2010 8:26,2.55": "wrong_column_count:6",
        "536365,85123A,WHITE HEART,six,12/1/2010 8:26,2.55,17850,United Kingdom": "mistyped_field:Quantity",
        "536365,85123A,WHITE HEART,6,yesterday,2.55,17850,United Kingdom": "mistyped_field:InvoiceDate",
        "536365,85123A,WHITE HEART,6,2/30/2010 8:26,2.55,17850,United Kingdom": "impossible_timestamp",
        "536365,85123A,WHITE HEART,6,12/1/1970 8:26,2.55,17850,United Kingdom": "impossible_timestamp",
        "536365,,WHITE HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom": "missing_field:StockCode",
    }
    for text, reason in rejects.items():
        with pytest.raises(Reject, match=reason):
            event(text)
    with pytest.raises(CPRecError, match="lacks CustomerID"):
        readers.retail_columns("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,Country")


def test_retail_title_keeps_mixed_case():
    assert readers.retail_title("Dolly Girl Lunch Box") == "Dolly Girl Lunch Box"
    assert readers.retail_title("SET OF 3 CAKE TINS (PANTRY)") == "Set Of 3 Cake Tins (Pantry)"
    assert readers.retail_title("   ") is None


def test_parse_lines_accounts_for_every_line():
    lines = [
        b'{"user_id": "A", "parent_asin": "B", "timestamp": 1600000000000}',
        b"",
        b'{"user_id": "A", "parent_asin": "\xff\xfe", "timestamp": 1600000000000}',
        b'{"user_id": "A", "parent_asin": "C", "timestamp": 1600000000001}\r',
    ]
    (table,) = readers.parse_lines(iter(lines), "amazon2023", "events", "Books", "s3://bucket/Books.jsonl")
    assert table.schema == readers.EVENT_ROWS
    rows = table.to_pylist()
    assert [r["line"] for r in rows] == [1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["ok", "skip", "reject", "ok"]
    assert rows[2]["reason"] == "non_utf8" and "\\xff" in rows[2]["record"]
    assert rows[3]["item_id"] == "C" and rows[3]["reason"] is None and rows[3]["record"] is None
    assert {r["source_file"] for r in rows} == {"s3://bucket/Books.jsonl"}


def test_line_splitting_across_chunks():
    assert list(readers._lines(iter([b"ab\ncd", b"e\n", b"f"]))) == [b"ab", b"cde", b"f"]
    assert list(readers._lines(iter([b"ab\n"]))) == [b"ab"]


# ----------------------------------------------------------------------------- discovery


def test_discover_roles_domains_and_filters(tmp_path):
    write(tmp_path / "Books.jsonl.gz", [], gz=True)
    write(tmp_path / "meta_Books.jsonl", [])
    write(tmp_path / "sub" / "Toys_and_Games.jsonl", [])
    write(tmp_path / "sub" / "meta_Toys_and_Games.jsonl.gz", [], gz=True)
    write(tmp_path / "README.md", ["not data"])
    files = readers.discover(SourceConfig(format="amazon2023", path=str(tmp_path)))
    assert [(Path(f.path).name, f.role, f.domain) for f in files] == [
        ("Books.jsonl.gz", "events", "Books"),
        ("meta_Books.jsonl", "items", "Books"),
        ("Toys_and_Games.jsonl", "events", "Toys_and_Games"),
        ("meta_Toys_and_Games.jsonl.gz", "items", "Toys_and_Games"),
    ]
    only = readers.discover(SourceConfig(format="amazon2023", path=str(tmp_path), domains=["Books"]))
    assert {f.domain for f in only} == {"Books"}
    assert readers.classify("amazon2018", "Books_5.json.gz") == ("events", "Books")
    assert readers.classify("amazon2018", "meta_Books.json") == ("items", "Books")
    assert readers.classify("recbole", "ml.inter") == ("events", "ml")


@pytest.mark.parametrize(
    ("layout", "source", "message"),
    [
        ([], {"path": "MISSING"}, "input path does not exist"),
        (["notes.txt"], {}, "no amazon2023 files"),
        (
            ["Books.jsonl", "meta_Books.jsonl"],
            {"domains": ["Toys"]},
            r"domain Toys not found .* \(found: Books\)",
        ),
        (["Books.jsonl"], {}, "domain Books .* has interactions but no item file"),
        (["meta_Books.jsonl"], {}, "has an item file but no interactions"),
        (["Books.jsonl", "Books.jsonl.gz", "meta_Books.jsonl"], {}, "2 events files for domain Books"),
        (["Books.jsonl"], {"format": "parquet"}, "unknown source format 'parquet'"),
        (["Books.jsonl"], {"domain": "Books"}, "applies to online_retail only"),
        (["Books.jsonl"], {"format": "online_retail"}, "no Online Retail files"),
    ],
)
def test_discover_errors(tmp_path, layout, source, message):
    for name in layout:
        write(tmp_path / name, [])
    config = {"format": "amazon2023", "path": str(tmp_path), **source}
    if config["path"] == "MISSING":
        config["path"] = str(tmp_path / "nowhere")
    with pytest.raises(CPRecError, match=message):
        readers.discover(SourceConfig(**config))


# ----------------------------------------------------------------------------- Ray reads


@pytest.mark.parametrize("gz", [False, True])
def test_read_amazon2023(ray_local, tmp_path, gz):
    suffix = ".gz" if gz else ""
    review = {"user_id": "U1", "parent_asin": "B1", "asin": "B1", "rating": 5.0, "timestamp": MS_2020}
    write(
        tmp_path / f"Books.jsonl{suffix}",
        [json.dumps(review), "{broken", json.dumps({**review, "user_id": 7.5}), b"\xc3\x28"],
        gz=gz,
    )
    write(
        tmp_path / f"meta_Books.jsonl{suffix}", [json.dumps({"parent_asin": "B1", "title": "T"}), "{}"], gz=gz
    )
    source = SourceConfig(format="amazon2023", path=str(tmp_path))
    events = rows_by_line(readers.read_events([source]))
    name = f"Books.jsonl{suffix}"
    assert events[(name, 1)]["status"] == "ok" and events[(name, 1)]["timestamp"] == MS_2020
    assert events[(name, 1)]["source_file"] == str(tmp_path / name)
    assert [events[(name, n)]["reason"] for n in (2, 3, 4)] == [
        "malformed_json",
        "mistyped_field:user_id",
        "non_utf8",
    ]
    assert events[(name, 2)]["record"] == "{broken"
    items = rows_by_line(readers.read_items([source]))
    assert items[(f"meta_Books.jsonl{suffix}", 1)]["title"] == "T"
    assert items[(f"meta_Books.jsonl{suffix}", 2)]["reason"] == "missing_field:parent_asin"


def test_read_amazon2018_and_recbole_together(ray_local, tmp_path):
    write(
        tmp_path / "a18" / "Books_5.json.gz",
        [json.dumps({"reviewerID": "R", "asin": "1", "unixReviewTime": 1.6e9})],
        gz=True,
    )
    write(
        tmp_path / "a18" / "meta_Books.json",
        [json.dumps({"asin": "1", "title": "T", "category": ["Books", "Crime"]})],
    )
    write(
        tmp_path / "rb" / "shop.inter",
        ["user_id:token\titem_id:token\ttimestamp:float", "u\ti\t1600000000", "u\ti"],
    )
    write(tmp_path / "rb" / "shop.item", ["item_id:token\ttitle:token_seq", "i\tSage Mug"])
    sources = [
        SourceConfig(format="amazon2018", path=str(tmp_path / "a18")),
        SourceConfig(format="recbole", path=str(tmp_path / "rb")),
    ]
    events = rows_by_line(readers.read_events(sources))
    assert (
        events[("Books_5.json.gz", 1)]["domain"] == "Books"
        and events[("Books_5.json.gz", 1)]["timestamp"] == MS_2020
    )
    assert events[("shop.inter", 2)]["user_id"] == "u" and events[("shop.inter", 2)]["domain"] == "shop"
    assert events[("shop.inter", 3)]["reason"] == "wrong_column_count:2"
    assert ("shop.inter", 1) not in events  # the header is not a record
    items = rows_by_line(readers.read_items(sources))
    assert items[("meta_Books.json", 1)]["category"] == "Crime"
    assert items[("shop.item", 2)]["title"] == "Sage Mug"


def test_read_online_retail(ray_local, tmp_path):
    lines = [
        RETAIL_HEADER,
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom",
        "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,12/1/2010 9:41,2.55,17850,United Kingdom",
        "536414,22139,RETROSPOT TEA SET,56,12/1/2010 11:52,0,,United Kingdom",
        "536415,22140,BROKEN LINE",
    ]
    write(tmp_path / "online_retail.csv.gz", lines, gz=True)
    source = SourceConfig(
        format="online_retail", path=str(tmp_path / "online_retail.csv.gz"), domain="Gift_Shop"
    )
    events = rows_by_line(readers.read_events([source]))
    name = "online_retail.csv.gz"
    assert [events[(name, n)]["status"] for n in (2, 3, 4, 5)] == ["ok", "skip", "skip", "reject"]
    assert events[(name, 2)]["domain"] == "Gift_Shop"
    # items: every product line, whatever its interaction status; the malformed line is reported by events only
    items = rows_by_line(readers.read_items([source]))
    assert sorted(items) == [(name, 2), (name, 3), (name, 4)]
    assert items[(name, 4)]["title"] == "Retrospot Tea Set" and items[(name, 4)]["status"] == "ok"


def test_bad_header_fails_on_the_driver(ray_local, tmp_path):
    write(tmp_path / "x.inter", ["user_id:token\ttimestamp:float", "u\t1"])
    write(tmp_path / "x.item", ["item_id:token", "i"])
    with pytest.raises(CPRecError, match="x.inter: RecBole .inter header lacks item_id"):
        readers.read_events([SourceConfig(format="recbole", path=str(tmp_path))])
    write(tmp_path / "empty" / "retail.csv", [])
    (tmp_path / "empty" / "retail.csv").write_bytes(b"")
    with pytest.raises(CPRecError, match="empty file"):
        readers.read_events([SourceConfig(format="online_retail", path=str(tmp_path / "empty"))])


def test_truncated_gzip_names_the_file(ray_local, tmp_path):
    data = gzip.compress(b'{"user_id": "U", "parent_asin": "B", "timestamp": 1600000000000}\n' * 5000)
    (tmp_path / "Books.jsonl.gz").write_bytes(data[: len(data) // 2])
    write(tmp_path / "meta_Books.jsonl", [json.dumps({"parent_asin": "B", "title": "T"})])
    with pytest.raises(CPRecError, match="cannot read .*Books.jsonl.gz"):
        readers.read_events([SourceConfig(format="amazon2023", path=str(tmp_path))]).materialize()

"""The native scan: DuckDB's fast path against the reference parsers, and scans of real layouts.

Scan units are plain functions, so these tests call them in process (no Ray); the build runs the
same functions as Ray tasks (tests/data_prep/test_build.py).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from scan_fixture import rows_by_line, scan_tables

from cprec.core.errors import CPRecError
from cprec.core.sources import SourceConfig
from cprec.data_prep import readers, scan

MS_2020 = 1_600_000_000_000
RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def write(path: Path, lines: list[str | bytes], gz: bool = False, end: bytes = b"\n") -> Path:
    data = end.join((line if isinstance(line, bytes) else line.encode()) for line in lines) + end
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def scanned(tmp_path: Path, sources: list[SourceConfig], catalogs: list[SourceConfig] = ()) -> dict:
    """Rows by (file name, line) for events, items and catalogue items; records by file name."""
    tables = scan_tables(tmp_path / "work", sources, catalogs)
    out = {role: rows_by_line(tables[role]) for role in ("events", "items", "catalog")}
    return {**out, "records": {Path(path).name: n for path, n in tables["records"].items()}}


# ----------------------------------------------------------------- the fast path = the parsers

HOSTILE_EVENTS = [
    "",
    "   ",
    "{broken",
    "[1, 2]",
    '"text"',
    "null",
    '{"a": 1,}',
    '{"a": NaN}',
]


def amazon_event_lines(user: str, item: str, stamp: str) -> list[str]:
    return [
        f'{{"{user}": "A1", "{item}": "B1", "{stamp}": 1600000000}}',
        f'{{"{user}": " A1\\u00a0", "{item}": "\\tB1", "{stamp}": 1600000000}}',
        f'{{"{user}": "A\\u00e9", "{item}": "B\\"q", "{stamp}": 1600000000}}',
        f'{{"{user}": "A1", "{item}": "B1", "{stamp}": 1.6e9}}',
        f'{{"{user}": "A1", "{item}": "B1", "{stamp}": "1600000000"}}',
        f'{{"{user}": "A1", "{item}": "B1", "{stamp}": " 1600000000 "}}',
        f'{{"{user}": 5, "{item}": "B1", "{stamp}": 1600000000}}',
        f'{{"{user}": true, "{item}": "B1", "{stamp}": 1600000000}}',
        f'{{"{user}": "", "{item}": "B1", "{stamp}": 1600000000}}',
        f'{{"{user}": " ", "{item}": "B1", "{stamp}": 1600000000}}',
        f'{{"{item}": "B1", "{stamp}": 1600000000}}',
        f'{{"{user}": "A", "{item}": null, "{stamp}": 1600000000}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 99}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": -5}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 18446744073709551615}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 1{"0" * 400}}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": "1{"0" * 400}"}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 4102444799999}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 4102444800000}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 631152000000}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 631151999999}}',
        f'{{"{user}": "A\\ud800", "{item}": "B", "{stamp}": 1600000000}}',
        f'{{"{user}": "A", "{item}": "B", "{stamp}": 1600000000, "extra": [1, {{"x": null}}]}}',
    ]


AMAZON2018_ITEMS = [
    '{"asin": "B1", "title": " T ", "brand": "Br", "category": ["Books", " Crime ", ""], "description": ["a", " b ", null]}',
    '{"asin": "B1", "title": ["x", "y"], "brand": {"a": 1}, "category": "Leaf", "description": true}',
    '{"asin": "B1", "title": 5, "category": []}',
    '{"asin": "B1", "title": "", "category": [null]}',
    '{"asin": "B1", "title": "\\t", "brand": null, "category": [1, "a"]}',
    '{"asin": "B1", "title": "T", "category": [["a"], "b"], "description": [{"k": 1}]}',
    '{"asin": "B1", "title": "T\\u2003", "description": "  "}',
    '{"asin": "B1"}',
    '{"title": "x"}',
    '{"asin": 12, "title": "x"}',
]

AMAZON2023_ITEMS = [
    '{"parent_asin": "B1", "title": "T", "store": null, "details": {"Brand": " X "}, "categories": ["a", "b"], "description": []}',
    '{"parent_asin": "B1", "title": "T", "store": "S", "details": {"Brand": "X"}}',
    '{"parent_asin": "B1", "title": "T", "store": "", "details": "str"}',
    '{"parent_asin": "B1", "title": "T", "details": {"Brand": ["a", "b"]}}',
    '{"parent_asin": "B1", "title": "T", "details": {"Brand": 7}}',
    '{"parent_asin": "B1", "title": "T", "store": 3.5}',
    '{"parent_asin": "B1", "title": "T", "categories": "Leaf", "description": ["Made of oak.", "Two drawers."]}',
    '{"parent_asin": "B1", "title": "T", "rating_number": 1234, "average_rating": 4.3}',
    '{"parent_asin": "B1", "title": "T", "rating_number": 0, "average_rating": null}',
    '{"parent_asin": "B1", "title": "T", "rating_number": "12", "average_rating": "4.5"}',
    '{"parent_asin": "B1", "title": "T", "rating_number": -3, "average_rating": 0.99}',
    '{"parent_asin": "B1", "title": "T", "rating_number": 12.0, "average_rating": 5}',
    '{"parent_asin": "B1", "title": "T", "rating_number": 1e2, "average_rating": 5.01}',
    '{"parent_asin": "B1", "title": "T", "rating_number": true, "average_rating": [4]}',
    '{"parent_asin": "B1", "title": "T", "rating_number": 9223372036854775807, "average_rating": 1}',
    '{"parent_asin": "B1", "title": "T", "rating_number": 18446744073709551615, "average_rating": 1e400}',
    '{"parent_asin": "B1", "title": "T", "rating_number": 1' + "0" * 400 + ', "average_rating": 3.3333333333333335}',
]

RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
RECBOLE_EVENTS = [
    "u\ti\t5\t1600000000",
    "u\ti\t5\t1600000000.5",
    " u \t i \t5\t 1600000000 ",
    "u\ti\t5\t1.6e9",
    "u\ti\t5\t99",
    "u\ti\t5\tabc",
    "u\t\t5\t1600000000",
    "u\ti\t5",
    "u\ti\t5\t1600000000\textra",
    "u\ti\t5\t1" + "0" * 400,
    "u\ti\t5\t1600000000\r",
]


@pytest.mark.parametrize(
    ("format", "role", "header", "lines"),
    [
        ("amazon2023", "events", None, HOSTILE_EVENTS + amazon_event_lines("user_id", "parent_asin", "timestamp")),
        ("amazon2018", "events", None, HOSTILE_EVENTS + amazon_event_lines("reviewerID", "asin", "unixReviewTime")),
        ("amazon2018", "items", None, HOSTILE_EVENTS + AMAZON2018_ITEMS),
        ("amazon2023", "items", None, HOSTILE_EVENTS + AMAZON2023_ITEMS),
        ("recbole", "events", RECBOLE_HEADER, ["", "  "] + RECBOLE_EVENTS),
    ],
)
def test_fast_path_reads_a_line_as_the_parser_does(format, role, header, lines):
    """Every line the fast path takes gets exactly the parser's values; every line it declines
    goes to the parser. Lines the parser would reject must never be taken."""
    parse = readers.line_parser(format, role, header)
    con = duckdb.connect()
    con.register("lines", pa.table({"line": range(1, len(lines) + 1), "raw": [line + "\n" for line in lines]}))
    result = con.sql(scan.fast_query(format, role, header)).to_arrow_table().to_pylist()
    names = readers.EVENT_VALUES if role == "events" else readers.ITEM_VALUES
    taken = 0
    for row, line in zip(result, lines):
        if not row["plain"]:
            continue
        taken += 1
        assert tuple(row[n] for n in names) == parse(line.rstrip("\r")), line
    assert taken >= 2  # the plain lines of each list are taken


# ----------------------------------------------------------------------------- scanning files


@pytest.mark.parametrize("gz", [False, True])
def test_scan_amazon2023(tmp_path, gz):
    suffix = ".gz" if gz else ""
    review = {"user_id": "U1", "parent_asin": "B1", "asin": "B1", "rating": 5.0, "timestamp": MS_2020}
    write(
        tmp_path / f"Books.jsonl{suffix}",
        [json.dumps(review), "{broken", json.dumps({**review, "user_id": 7.5}), b"\xc3\x28", ""],
        gz=gz,
    )
    write(tmp_path / f"meta_Books.jsonl{suffix}", [json.dumps({"parent_asin": "B1", "title": "T"}), "{}"], gz=gz)
    out = scanned(tmp_path, [SourceConfig(format="amazon2023", path=str(tmp_path))])
    name = f"Books.jsonl{suffix}"
    events = out["events"]
    assert events[(name, 1)]["status"] == "ok" and events[(name, 1)]["timestamp"] == MS_2020
    assert events[(name, 1)]["source_file"] == str(tmp_path / name) and events[(name, 1)]["domain"] == "Books"
    assert [events[(name, n)]["reason"] for n in (2, 3, 4, 5)] == [
        "malformed_json",
        "mistyped_field:user_id",
        "non_utf8",
        "blank_line",
    ]
    assert events[(name, 2)]["record"] == "{broken" and "\\xc3" in events[(name, 4)]["record"]
    assert out["items"][(f"meta_Books.jsonl{suffix}", 1)]["title"] == "T"
    assert out["items"][(f"meta_Books.jsonl{suffix}", 2)]["reason"] == "missing_field:parent_asin"
    assert out["records"] == {name: 5, f"meta_Books.jsonl{suffix}": 2}


def test_scan_amazon2023_item_ratings_on_both_paths(tmp_path):
    meta = [
        {"parent_asin": "B1", "title": "Atlas", "rating_number": 1234, "average_rating": 4.3},
        {"parent_asin": "B2", "title": "Bible"},  # no ratings
        {"parent_asin": "B3", "title": "Cookbook", "rating_number": "12", "average_rating": "4.5"},  # malformed
        # a title of odd shape sends the line to the Python parser
        {"parent_asin": "B4", "title": 1984, "rating_number": 7, "average_rating": 3.5},
        {"parent_asin": "B5", "title": 1985, "rating_number": -1, "average_rating": 9},
    ]
    lines = [json.dumps(record) for record in meta]
    write(tmp_path / "src" / "meta_Books.jsonl", lines)
    write(tmp_path / "src" / "Books.jsonl", [json.dumps({"user_id": "U", "parent_asin": "B1", "timestamp": MS_2020})])
    con = duckdb.connect()
    con.register("lines", pa.table({"line": range(1, 6), "raw": [line + "\n" for line in lines]}))
    plain = con.sql(scan.fast_query("amazon2023", "items", None)).to_arrow_table()["plain"].to_pylist()
    assert plain == [True, True, True, False, False]
    source = SourceConfig(format="amazon2023", path=str(tmp_path / "src"))
    for item_ratings in (False, True):
        tables = scan_tables(tmp_path / f"work-{item_ratings}", [source], item_ratings=item_ratings)
        items = {r["line"]: r for r in tables["items"].to_pylist()}
        assert all(r["status"] == "ok" for r in items.values())  # a malformed rating is no reject
        ratings = [(items[n]["rating_number"], items[n]["average_rating"]) for n in range(1, 6)]
        assert ratings == [(1234, 4.3), (None, None), (None, None), (7, 3.5), (None, None)]
        texts = [items[n]["text"] for n in range(1, 6)]
        if item_ratings:
            assert texts[0] == "[Books] Atlas | rating: 4.3 of 5, 1,234 ratings"
            assert texts[3] == "[Books] 1984 | rating: 3.5 of 5, 7 ratings"
            assert texts[1:3] + texts[4:] == ["[Books] Bible", "[Books] Cookbook", "[Books] 1985"]
        else:
            assert not any("rating" in text for text in texts)


def test_scan_amazon2018_and_recbole_together(tmp_path):
    write(tmp_path / "a18" / "Books_5.json.gz", [json.dumps({"reviewerID": "R", "asin": "1", "unixReviewTime": 1.6e9})], gz=True)
    write(tmp_path / "a18" / "meta_Books.json", [json.dumps({"asin": "1", "title": "T", "category": ["Books", "Crime"]})])
    write(tmp_path / "rb" / "shop.inter", [RECBOLE_HEADER, "u\ti\t5\t1600000000", "u\ti"])
    write(tmp_path / "rb" / "shop.item", ["item_id:token\ttitle:token_seq", "i\tSage Mug"])
    sources = [
        SourceConfig(format="amazon2018", path=str(tmp_path / "a18")),
        SourceConfig(format="recbole", path=str(tmp_path / "rb")),
    ]
    out = scanned(tmp_path, sources)
    events, items = out["events"], out["items"]
    assert events[("Books_5.json.gz", 1)]["timestamp"] == MS_2020
    assert events[("shop.inter", 2)]["user_id"] == "u" and events[("shop.inter", 2)]["domain"] == "shop"
    assert events[("shop.inter", 3)]["reason"] == "wrong_column_count:2"
    assert ("shop.inter", 1) not in events  # the header is not a record
    assert items[("meta_Books.json", 1)]["category"] == "Crime"
    assert items[("shop.item", 2)]["title"] == "Sage Mug"
    for key in (("meta_Books.json", 1), ("shop.item", 2)):  # formats without ratings: null
        assert items[key]["rating_number"] is None and items[key]["average_rating"] is None
    assert out["records"]["shop.inter"] == 2


def test_byte_order_marks_are_stripped(tmp_path):
    write(tmp_path / "a" / "Books.jsonl", [b"\xef\xbb\xbf" + json.dumps({"user_id": "U", "parent_asin": "B", "timestamp": MS_2020}).encode()])
    write(tmp_path / "a" / "meta_Books.jsonl", [b"\xef\xbb\xbf" + json.dumps({"parent_asin": "B", "title": "T"}).encode()])
    write(tmp_path / "r" / "x.inter.gz", [b"\xef\xbb\xbf" + RECBOLE_HEADER.encode(), b"u\ti\t5\t1600000000"], gz=True)
    write(tmp_path / "r" / "x.item", [b"\xef\xbb\xbfitem_id:token\ttitle:token_seq", b"i\tMug"])
    out = scanned(tmp_path, [SourceConfig(format="amazon2023", path=str(tmp_path / "a")), SourceConfig(format="recbole", path=str(tmp_path / "r"))])
    assert out["events"][("Books.jsonl", 1)]["status"] == "ok"
    assert out["items"][("meta_Books.jsonl", 1)]["title"] == "T"
    assert out["events"][("x.inter.gz", 2)]["status"] == "ok"
    assert out["items"][("x.item", 2)]["title"] == "Mug"


def test_online_retail_each_record_once_multiline_fields_kept(tmp_path):
    good = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom"
    lines = [
        RETAIL_HEADER,
        good,
        'C536379,85123A,"WHITE HANGING, HEART",-1,12/1/2010 9:41,2.55,17850,United Kingdom',
        '536380,22141,"RED MUG',
        'WITH LID",3,12/1/2010 9:45,1.25,17851,United Kingdom',
        "536414,22139,RETROSPOT TEA SET,56,12/1/2010 11:52,0,,United Kingdom",
        "536415,22140,BROKEN LINE",
        good.replace("17850", "17852"),
    ]
    path = write(tmp_path / "online_retail.csv", lines, end=b"\r\n")
    out = scanned(tmp_path, [SourceConfig(format="online_retail", path=str(path), domain="Gift_Shop")])
    events = {line: row for (_, line), row in out["events"].items()}
    assert {line: row["status"] for line, row in events.items()} == {
        2: "ok", 3: "skip", 4: "ok", 6: "skip", 7: "reject", 8: "ok"
    }
    assert events[4]["item_id"] == "22141" and events[4]["user_id"] == "17851"
    assert events[7]["reason"] == "wrong_column_count:3"
    # one record per line or quoted span, counted once (the reject rate's denominator)
    assert out["records"] == {"online_retail.csv": 6}
    # catalogue rows beside them: every product record, without a second account of bad lines
    items = {line: row for (_, line), row in out["items"].items()}
    assert sorted(items) == [2, 3, 4, 6, 8] and {r["status"] for r in items.values()} == {"ok"}
    assert items[4]["title"] == "Red Mug With Lid"


def test_an_unclosed_quote_costs_one_record(tmp_path):
    lines = [RETAIL_HEADER, '536380,22141,"RED MUG,3,12/1/2010 9:45,1.25,17851,United Kingdom']
    lines += [f"5364{i:02d},22139,TEA SET,1,12/1/2010 11:52,1,17850,United Kingdom" for i in range(100)]
    path = write(tmp_path / "retail.csv", lines)
    out = scanned(tmp_path, [SourceConfig(format="online_retail", path=str(path))])
    statuses = [out["events"][("retail.csv", n)]["status"] for n in range(2, 103)]
    assert statuses[0] == "reject" and statuses[1:] == ["ok"] * 100


def test_catalogue_sources_write_catalogue_rows_only(tmp_path):
    write(tmp_path / "a" / "Books.jsonl", [json.dumps({"user_id": "U", "parent_asin": "B", "timestamp": MS_2020})])
    write(tmp_path / "a" / "meta_Books.jsonl", [json.dumps({"parent_asin": "B", "title": "T"})])
    write(tmp_path / "c" / "Toys.jsonl", [json.dumps({"user_id": "U", "parent_asin": "C", "timestamp": MS_2020})])
    write(tmp_path / "c" / "meta_Toys.jsonl", [json.dumps({"parent_asin": "C", "title": "Kite"})])
    out = scanned(
        tmp_path,
        [SourceConfig(format="amazon2023", path=str(tmp_path / "a"))],
        [SourceConfig(format="amazon2023", path=str(tmp_path / "c"))],
    )
    assert set(out["catalog"]) == {("meta_Toys.jsonl", 1)}
    assert {name for name, _ in out["events"]} == {"Books.jsonl"}


@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
def test_byte_ranges_read_every_line_once_with_its_number(tmp_path, monkeypatch, end):
    rows = [{"user_id": f"U{i % 7}", "parent_asin": f"B{i}", "timestamp": MS_2020 + i, "text": "x" * (i % 37)} for i in range(3000)]
    lines = [json.dumps(r) for r in rows]
    lines[5], lines[1700] = "{broken", ""
    data = end.join(line.encode() for line in lines)  # the last line has no newline
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Books.jsonl").write_bytes(data)
    write(tmp_path / "src" / "meta_Books.jsonl", [json.dumps({"parent_asin": "B1", "title": "T"})])
    source = SourceConfig(format="amazon2023", path=str(tmp_path / "src"))
    whole = scanned(tmp_path / "whole", [source])
    monkeypatch.setattr(scan, "SPLIT_BYTES", 4099)  # ranges that cut lines anywhere, some inside one line
    assert len(scan.plan([source], []).units) > 20
    split = scanned(tmp_path / "split", [source])
    assert split["events"] == whole["events"] and len(whole["events"]) == 3000
    assert split["records"] == whole["records"] == {"Books.jsonl": 3000, "meta_Books.jsonl": 1}
    assert split["events"][("Books.jsonl", 3000)]["item_id"] == "B2999"
    assert split["events"][("Books.jsonl", 6)]["reason"] == "malformed_json"


def test_chunks_cut_between_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "CHUNK_BYTES", 64)
    lines = [json.dumps({"user_id": "U", "parent_asin": f"B{i}", "timestamp": MS_2020}) for i in range(50)]
    write(tmp_path / "Books.jsonl.gz", lines, gz=True)
    write(tmp_path / "meta_Books.jsonl", [json.dumps({"parent_asin": "B1", "title": "T"})])
    out = scanned(tmp_path, [SourceConfig(format="amazon2023", path=str(tmp_path))])
    assert [out["events"][("Books.jsonl.gz", n)]["item_id"] for n in range(1, 51)] == [f"B{i}" for i in range(50)]


def test_bad_header_and_truncated_gzip_name_the_file(tmp_path):
    write(tmp_path / "x.inter", ["user_id:token\ttimestamp:float", "u\t1"])
    write(tmp_path / "x.item", ["item_id:token", "i"])
    with pytest.raises(CPRecError, match="x.inter: RecBole .inter header lacks item_id"):
        scan.plan([SourceConfig(format="recbole", path=str(tmp_path))], [])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "retail.csv").write_bytes(b"")
    with pytest.raises(CPRecError, match="empty file"):
        scan.plan([SourceConfig(format="online_retail", path=str(tmp_path / "empty"))], [])
    data = gzip.compress(b'{"user_id": "U", "parent_asin": "B", "timestamp": 1600000000000}\n' * 5000)
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "Books.jsonl.gz").write_bytes(data[: len(data) // 2])
    write(tmp_path / "gz" / "meta_Books.jsonl", [json.dumps({"parent_asin": "B", "title": "T"})])
    with pytest.raises(CPRecError, match="cannot read .*Books.jsonl.gz"):
        scanned(tmp_path / "out", [SourceConfig(format="amazon2023", path=str(tmp_path / "gz"))])

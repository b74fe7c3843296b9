"""Readers of the four source formats: the reference line parsers and discovery (scans of files: test_scan.py)."""

from __future__ import annotations

import collections
import gzip
import json
import logging
import random
from pathlib import Path

import pytest

from cprec.core import template
from cprec.core.config import describe
from cprec.core.errors import CPRecError
from cprec.core.sources import SourceConfig
from cprec.data_prep import readers
from cprec.data_prep.readers import Reject, Skip

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
        "rating_number": 1234,
        "average_rating": 4.3,
    }
    assert readers.parse_amazon2023_item(json.dumps(meta)) == (
        "B01",
        "Sage Linen Pillow",
        "Hearthline",
        "Throw Pillows",
        "Soft. Washable.",
        1234,
        4.3,
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
    assert readers.parse_amazon2023_item(json.dumps(bare)) == ("B01", "X", "B", None, None, None, None)


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ({"rating_number": 0, "average_rating": None}, (0, None)),  # the generated world's unrated items
        ({"rating_number": 7, "average_rating": 5}, (7, 5.0)),
        ({"rating_number": 7}, (7, None)),
        ({"average_rating": 1.0}, (None, 1.0)),
        # malformed values are left out like missing ones, never a reject
        ({"rating_number": "1,234", "average_rating": "4.3"}, (None, None)),
        ({"rating_number": -3, "average_rating": 0.5}, (None, None)),
        ({"rating_number": 12.0, "average_rating": 5.5}, (None, None)),
        ({"rating_number": True, "average_rating": True}, (None, None)),
        ({"rating_number": 2**63, "average_rating": [4.0]}, (None, None)),
        ({"rating_number": 10**400, "average_rating": 10**400}, (None, None)),
    ],
)
def test_amazon2023_item_ratings(ratings, expected):
    line = json.dumps({"parent_asin": "B01", "title": "X", **ratings})
    assert readers.parse_amazon2023_item(line)[5:] == expected


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
    # Amazon 2018 metadata has no rating count or average: its items have none
    meta["rating_number"], meta["average_rating"] = 12, 4.5
    assert readers.parse_amazon2018_item(json.dumps(meta)) == ("0001", "T", "Br", "Mystery", "D", None, None)
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
        None,
        None,
    )
    assert parse_item("i2\t\t\t") == ("i2", None, None, None, None, None, None)
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
    assert item(line) == ("85123A", "White Hanging Heart T-Light Holder", None, None, None, None, None)
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


# A line may hold anything: each parser returns a tuple or raises Reject or Skip, never anything else.
BIG = "1" + "0" * 399  # a 400-digit integer: beyond float range
RECBOLE_INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
RECBOLE_ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"


def all_parsers() -> dict[str, tuple]:
    """name -> (parse, a valid line, the keys of its JSON record or None)."""
    retail = readers.retail_columns(RETAIL_HEADER)
    retail_line = "536365,85123A,WHITE HEART,6,12/1/2010 8:26,2.55,17850.0,United Kingdom"
    return {
        "amazon2023_event": (
            readers.parse_amazon2023_event,
            json.dumps({"user_id": "U", "parent_asin": "B", "timestamp": MS_2020}),
        ),
        "amazon2023_item": (
            readers.parse_amazon2023_item,
            json.dumps(
                {
                    "parent_asin": "B",
                    "title": "T",
                    "store": "S",
                    "categories": ["A", "C"],
                    "description": ["D"],
                    "details": {"Brand": "X"},
                }
            ),
        ),
        "amazon2018_event": (
            readers.parse_amazon2018_event,
            json.dumps({"reviewerID": "R", "asin": "A", "unixReviewTime": 1_600_000_000}),
        ),
        "amazon2018_item": (
            readers.parse_amazon2018_item,
            json.dumps({"asin": "A", "title": "T", "brand": "B", "category": ["X", "Y"], "description": "D"}),
        ),
        "recbole_event": (
            readers.make_recbole_event_parser(readers.recbole_columns(RECBOLE_INTER_HEADER)),
            "u1\ti1\t5\t1600000000",
        ),
        "recbole_item": (
            readers.make_recbole_item_parser(readers.recbole_columns(RECBOLE_ITEM_HEADER)),
            "1\tToy Story\t1995\tAnimation Children's Comedy",
        ),
        "retail_event": (readers.make_retail_event_parser(retail), retail_line),
        "retail_item": (readers.make_retail_item_parser(retail), retail_line),
    }


def json_variants(valid: str) -> list[str]:
    """The valid JSON line with each field in turn set to each hostile value."""
    record = json.loads(valid)
    values = [
        BIG,
        f'"{BIG}"',
        "1" + "0" * 5000,  # beyond Python's int-to-str digit limit
        "1e400",
        "-1e400",
        "NaN",
        "-Infinity",
        "1.7e308",
        "-1",
        "true",
        "null",
        "{}",
        '"\\ud800"',  # a lone UTF-16 surrogate: not UTF-8
        '["x", "\\udfff"]',
        '["x", ' + "[" * 900 + "]" * 900 + ', {"a": 1}, true, 3]',
        "[" * 100_000 + "]" * 100_000,
        '"' + "x" * 1_000_000 + '"',
    ]
    lines = []
    for key in record:
        for value in values:
            other = {k: json.dumps(v) for k, v in record.items() if k != key}
            lines.append("{" + ", ".join([*(f'"{k}": {v}' for k, v in other.items()), f'"{key}": {value}']) + "}")
    return lines


def hostile_lines(name: str, valid: str) -> list[str]:
    lines = [
        "",
        " ",
        "\t\t\t",
        "\x00",
        "\ufeff",
        "\r",
        "\\",
        '"',
        "{",
        "[",
        "null",
        "[1, 2]",
        "9" * 400,
        "," * 7,
        "[" * 100_000,
        '{"a":' * 100_000,
        "x" * 1_000_000,
        valid[: len(valid) // 2],
        valid + valid,
    ]
    if name.startswith("amazon"):
        lines += json_variants(valid)
    if name.startswith("recbole"):
        cells = valid.split("\t")
        for i in range(len(cells)):
            for value in [BIG, "nan", "1e400", "-inf", "", " ", "\\ud800", "x" * 1_000_000, "١٦٠٠٠٠٠٠٠٠"]:
                lines.append("\t".join([*cells[:i], value, *cells[i + 1 :]]))
    if name.startswith("retail"):
        cells = valid.split(",")
        for i in range(len(cells)):
            for value in [BIG, "nan", "-inf", "", '"', '"unclosed', "x" * 200_000, "1/1/0000 0:00", "99/99/9999 99:99"]:
                lines.append(",".join([*cells[:i], value, *cells[i + 1 :]]))
    return lines


def fuzzed(valid: str, count: int, seed: int) -> list[str]:
    """Seeded random edits of a valid line: insertions, deletions, repeats and cuts."""
    rng = random.Random(seed)
    pieces = list('{}[]",:\\ \t0123456789eE.-+') + ["null", "true", "NaN", "\\ud800", "\x00", "\r", "é", BIG]
    lines = []
    for _ in range(count):
        line = valid
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(line) + 1)
            op = rng.random()
            if op < 0.4:
                line = line[:at] + rng.choice(pieces) + line[at:]
            elif op < 0.7:
                line = line[:at] + line[at + rng.randint(1, 5) :]
            elif op < 0.9:
                line = line[:at] + line[at : at + rng.randint(1, 20)] * rng.randint(2, 50) + line[at:]
            else:
                line = line[:at]
        lines.append(line)
    return lines


@pytest.mark.parametrize("name", list(all_parsers()))
def test_hostile_lines_are_rejected_never_raised(name):
    parse, valid = all_parsers()[name]
    width = len(readers.EVENT_VALUES if name.endswith("event") else readers.ITEM_VALUES)
    lines = [valid, *hostile_lines(name, valid), *fuzzed(valid, 1500, seed=sum(map(ord, name)))]
    outcomes = collections.Counter()
    for line in lines:
        try:
            values = parse(line)
        except (Reject, Skip) as outcome:
            outcomes[type(outcome).__name__] += 1
            continue
        assert isinstance(values, tuple) and len(values) == width, (line[:200], values)
        for value in values:
            assert value is None or isinstance(value, (str, int)), (line[:200], values)
            if isinstance(value, str):
                value.encode("utf-8")  # every text fits an Arrow string column
        outcomes["ok"] += 1
    assert outcomes["Reject"] > 0 and outcomes["ok"] > 0


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        (
            "amazon2018_event",
            f'{{"reviewerID": "R", "asin": "A", "unixReviewTime": {BIG}}}',
            "mistyped_field:unixReviewTime",
        ),
        (
            "amazon2018_event",
            f'{{"reviewerID": "R", "asin": "A", "unixReviewTime": "{BIG}"}}',
            "mistyped_field:unixReviewTime",
        ),
        ("amazon2023_event", f'{{"user_id": "U", "parent_asin": "B", "timestamp": {BIG}}}', "mistyped_field:timestamp"),
        ("amazon2023_event", '{"user_id": "U", "parent_asin": "B", "timestamp": 1.7e308}', "impossible_timestamp"),
        (
            "amazon2023_event",
            '{"user_id": "U", "parent_asin": "B", "timestamp": 1' + "0" * 5000 + "}",
            "malformed_json",
        ),
        ("amazon2023_event", "[" * 100_000, "malformed_json"),
        ("amazon2023_item", '{"parent_asin": "B", "title": "T\\ud800"}', "non_utf8"),
        ("amazon2018_event", '{"reviewerID": "\\udc00", "asin": "A", "unixReviewTime": 1600000000}', "non_utf8"),
        ("recbole_event", f"u\ti\t5\t{BIG}", "mistyped_field:timestamp"),
        ("retail_event", f"536365,85123A,W,6,12/1/2010 8:26,2.55,1,{'x' * 200_000}", "malformed_csv"),
        ("retail_event", "536365,85123A,W,6,1/1/0000 0:00,2.55,1,UK", "impossible_timestamp"),
        ("retail_event", f"536365,85123A,W,{BIG},12/1/2010 8:26,2.55,1,UK", "mistyped_field:Quantity"),
    ],
)
def test_hostile_line_reasons(name, line, reason):
    with pytest.raises(Reject, match=f"^{reason}$"):
        all_parsers()[name][0](line)


def test_lists_keep_only_their_strings_and_numbers():
    # objects, booleans and nested lists inside a list carry no text, as they do at the top level
    meta = {"asin": "A", "title": ["Mug", ["x"], {"a": 1}, True, 2], "category": ["Home", "Mugs", {"a": 1}]}
    assert readers.parse_amazon2018_item(json.dumps(meta)) == ("A", "Mug 2", None, "Mugs", None, None, None)
    surrogate_pair = '{"asin": "A", "title": "Mug \\ud83d\\ude00"}'  # a valid pair is one character
    assert readers.parse_amazon2018_item(surrogate_pair)[1] == "Mug \U0001f600"


def test_recbole_item_columns():
    columns = readers.recbole_columns(RECBOLE_ITEM_HEADER)
    line = "1\tToy Story\t1995\tAnimation Children's Comedy"
    # ml-100k: the genres are in `class`, a default category field
    values = readers.make_recbole_item_parser(columns)(line)
    assert values == ("1", "Toy Story", None, "Animation Children's Comedy", None, None, None)
    assert template.item_text("ml-100k", *values[1:4]) == "[ml-100k] Toy Story | category: Animation Children's Comedy"
    source = SourceConfig(
        format="recbole", path="ml", title_columns=["name", "movie_title"], brand_columns=["release_year"]
    )
    parse = readers.line_parser("recbole", "items", RECBOLE_ITEM_HEADER, "ml.item", source)
    assert parse(line) == ("1", "Toy Story", "1995", "Animation Children's Comedy", None, None, None)
    no_category = SourceConfig(format="recbole", path="ml", category_columns=[])
    assert readers.line_parser("recbole", "items", RECBOLE_ITEM_HEADER, "", no_category)(line)[3] is None
    with pytest.raises(CPRecError, match="x.item: RecBole .item header has no title field .*title_columns"):
        readers.line_parser("recbole", "items", "item_id:token\tclass:token_seq", "x.item")


def test_recbole_column_options_validate():
    assert SourceConfig.from_dict({"format": "recbole", "path": "p", "title_columns": ["name"]}).title_columns == [
        "name"
    ]
    with pytest.raises(CPRecError, match="unknown keys"):
        SourceConfig.from_dict({"format": "recbole", "path": "p", "title_column": ["name"]})
    with pytest.raises(CPRecError, match="`title_columns` applies to recbole only"):
        SourceConfig(format="amazon2023", path="p", title_columns=["name"]).validate()
    with pytest.raises(CPRecError, match="`title_columns` is empty"):
        SourceConfig(format="recbole", path="p", title_columns=[]).validate()
    with pytest.raises(CPRecError, match="`category_columns` must be a list"):
        SourceConfig.from_dict({"format": "recbole", "path": "p", "category_columns": "class"}).validate()
    SourceConfig(format="amazon2023", path="p").validate()  # the defaults are fine everywhere
    help_text = "\n".join(describe(SourceConfig))
    assert all(f"{name} (" in help_text for name in ("title_columns", "brand_columns", "category_columns"))


def test_ignored_columns(tmp_path):
    write(tmp_path / "ml-100k.inter", [RECBOLE_INTER_HEADER, "u\t1\t5\t1600000000"])
    write(tmp_path / "ml-100k.item", ["\ufeff" + RECBOLE_ITEM_HEADER, "1\tToy Story\t1995\tAnimation"])
    write(tmp_path / "shop.inter.gz", [RECBOLE_INTER_HEADER], gz=True)
    write(tmp_path / "shop.item.gz", ["item_id:token\ttitle:token_seq\tbrand:token\tstore:token"], gz=True)
    source = SourceConfig(format="recbole", path=str(tmp_path))
    assert readers.ignored_columns(source) == {
        str(tmp_path / "ml-100k.item"): ["release_year"],
        str(tmp_path / "shop.item.gz"): ["store"],  # `brand` comes first
    }
    source.category_columns = []
    assert readers.ignored_columns(source)[str(tmp_path / "ml-100k.item")] == ["release_year", "class"]
    assert readers.ignored_columns(SourceConfig(format="amazon2023", path=str(tmp_path))) == {}


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


SIDE_FILES = [  # what a build or a generator leaves beside real dumps
    "stats.json",
    "world.json",
    "README.md",
    "tokenizer/tokenizer.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
]
IGNORED_FILES = ["_work/events/Books.json", ".cache/meta_Toys.json", "sub/.hidden.json", "sub/_partial.json"]


@pytest.mark.parametrize(
    ("format", "dumps", "side_reasons"),
    [
        (
            "amazon2018",
            ["Books.json.gz", "meta_Books.json.gz", "sub/Toys_and_Games_5.json", "sub/meta_Toys_and_Games.json"],
            {"stats.json": "no item file for domain stats", "README.md": "name fits no amazon2018 pattern"},
        ),
        (
            "amazon2018",  # the 2014 edition
            [
                "reviews_Books_5.json.gz",
                "meta_Books.json.gz",
                "reviews_Toys_and_Games_5.json",
                "meta_Toys_and_Games.json",
            ],
            {"world.json": "no item file for domain world"},
        ),
        (
            "amazon2023",
            [
                "Books.jsonl.gz",
                "meta_Books.jsonl.gz",
                "Toys_and_Games.jsonl",
                "meta_Toys_and_Games.jsonl",
                "notes.jsonl",
            ],
            {"stats.json": "name fits no amazon2023 pattern", "notes.jsonl": "no item file for domain notes"},
        ),
    ],
)
def test_discovery_reads_real_dumps_and_skips_side_files(tmp_path, caplog, format, dumps, side_reasons):
    for name in [*dumps, *SIDE_FILES, *IGNORED_FILES]:
        write(tmp_path / name, [])
    source = SourceConfig(format=format, path=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="cprec.data_prep.readers"):
        found = readers.discovery(source)
        assert readers.discover(source) == found.files
    data = [name for name in dumps if name != "notes.jsonl"]
    assert sorted(str(tmp_path / name) for name in data) == sorted(f.path for f in found.files)
    assert {(f.domain, f.role) for f in found.files} == {
        (d, r) for d in ("Books", "Toys_and_Games") for r in readers.ROLES
    }
    skipped = {str(Path(s.path).relative_to(tmp_path)): s.reason for s in found.skipped}
    assert sorted(skipped) == sorted(set(SIDE_FILES) | set(dumps) - set(data))
    for name, reason in side_reasons.items():
        assert skipped[name].startswith(reason)
    # each skipped file is logged once with its reason, however often the source is discovered
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == len(skipped) and any("stats.json: " in line for line in logged)


def test_discovery_of_named_domains(tmp_path):
    for name in ["Books.jsonl", "meta_Books.jsonl", "Toys.jsonl", "meta_Garden.jsonl", "stats.jsonl"]:
        write(tmp_path / name, [])
    found = readers.discovery(SourceConfig(format="amazon2023", path=str(tmp_path), domains=["Books"]))
    assert {f.domain for f in found.files} == {"Books"}
    assert [(Path(s.path).name, s.reason) for s in found.skipped] == [
        ("Toys.jsonl", "no item file for domain Toys"),
        ("meta_Garden.jsonl", "no interactions file for domain Garden"),
        ("stats.jsonl", "no item file for domain stats"),
    ]
    with pytest.raises(CPRecError, match="domain Toys .* has interactions but no item file"):
        readers.discover(SourceConfig(format="amazon2023", path=str(tmp_path), domains=["Toys"]))
    with pytest.raises(CPRecError, match="domain Garden .* has an item file but no interactions"):
        readers.discover(SourceConfig(format="amazon2023", path=str(tmp_path), domains=["Garden"]))
    with pytest.raises(CPRecError, match=r"domain Music not found .* \(found: Books\)"):
        readers.discover(SourceConfig(format="amazon2023", path=str(tmp_path), domains=["Music"]))


def test_discovery_of_online_retail_and_recbole(tmp_path):
    for name in ["retail/online_retail.csv", "retail/world.json", "rb/ml.inter", "rb/ml.item", "rb/ml.user"]:
        write(tmp_path / name, [])
    retail = readers.discovery(SourceConfig(format="online_retail", path=str(tmp_path / "retail")))
    assert [f.role for f in retail.files] == ["events", "items"]
    assert [Path(s.path).name for s in retail.skipped] == ["world.json"]
    recbole = readers.discovery(SourceConfig(format="recbole", path=str(tmp_path / "rb")))
    assert [Path(s.path).name for s in recbole.skipped] == ["ml.user"]

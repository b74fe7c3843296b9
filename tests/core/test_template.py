from cprec.core import template


def test_item_text_leaves_missing_fields_out_and_cuts_long_ones():
    text = template.item_text("Home_and_Kitchen", "  Brass   lamp ", None, "nan")
    assert text == "[Home and Kitchen] Brass lamp"
    long_title = "word " * 100
    cut = template.item_text("Books", long_title, "Acme", "Poetry")
    title_part = cut.split(" | ")[0].removeprefix("[Books] ")
    assert len(title_part) <= template.TITLE_CHARS and title_part.endswith("word")
    assert cut.endswith(" | brand: Acme | category: Poetry")


def test_item_ratings_field_after_category():
    full = template.item_text("Books", "Atlas", "Acme", "Maps", 1234, 4.26)
    assert full == "[Books] Atlas | brand: Acme | category: Maps | rating: 4.3 of 5, 1,234 ratings"
    assert template.item_text("Books", "Atlas", None, None, 1_000_000, 5) == (
        "[Books] Atlas | rating: 5.0 of 5, 1,000,000 ratings"
    )
    # the average missing (or unusable): the count alone
    assert template.item_text("Books", "Atlas", "Acme", None, 1234) == "[Books] Atlas | brand: Acme | 1,234 ratings"
    assert template.item_text("Books", "Atlas", None, None, 1234, float("nan")) == "[Books] Atlas | 1,234 ratings"
    assert template.item_text("Books", "Atlas", None, None, 1, 4.0) == "[Books] Atlas | rating: 4.0 of 5, 1 rating"
    # no positive count: no field, whatever the average
    for count in (None, 0, -5, True, 12.0, "1234"):
        assert template.item_text("Books", "Atlas", "Acme", "Maps", count, 4.3) == (
            "[Books] Atlas | brand: Acme | category: Maps"
        )
    assert template.item_text("Books", None, None, None, 1234, 4.3) == ""  # no title, no text


def test_item_text_without_ratings_is_unchanged():
    # the default output is TEMPLATE_VERSION 1's, byte for byte
    for fields in [("Atlas",), ("Atlas", "Acme"), ("Atlas", None, "Maps"), ("Atlas", "Acme", "Maps")]:
        expected = " | ".join(
            [f"[Home and Kitchen] {fields[0]}"]
            + [f"{name}: {value}" for name, value in zip(("brand", "category"), fields[1:]) if value]
        )
        assert template.item_text("Home_and_Kitchen", *fields) == expected
        assert template.item_text("Home_and_Kitchen", *fields, None, None) == expected


def test_item_without_title_has_no_text():
    assert template.item_text("Books", "   ", "Acme", "Poetry") == ""
    assert template.item_text("Books", None) == ""


def test_history_prompt_plus_continuation_is_the_longer_document():
    items = [template.item_text("Toys", f"Item {i}") for i in range(3)]
    assert template.history_prompt("Toys", items[:2]) + template.continuation(items[2]) == template.document(
        "domain", "Toys", items
    )
    assert template.document("mixed", "all", items).startswith("History across all domains:\n[Toys] Item 0")


def test_windows_cover_every_item_without_short_tails():
    for length in range(0, 230):
        bounds = template.windows(length, 50)
        assert [i for start, end in bounds for i in range(start, end)] == list(range(length))
        assert all(end - start <= 50 for start, end in bounds)
        if length > 50:
            assert min(end - start for start, end in bounds) >= 25


def test_template_version_is_pinned():
    # Changing the template's output must bump the version: this pins both together.
    assert template.TEMPLATE_VERSION == "1"
    assert template.document("domain", "Books", ["[Books] A"]) == "History in Books:\n[Books] A"

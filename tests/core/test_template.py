from cprec.core import template


def test_item_text_leaves_missing_fields_out_and_cuts_long_ones():
    text = template.item_text("Home_and_Kitchen", "  Brass   lamp ", None, "nan")
    assert text == "[Home and Kitchen] Brass lamp"
    long_title = "word " * 100
    cut = template.item_text("Books", long_title, "Acme", "Poetry")
    title_part = cut.split(" | ")[0].removeprefix("[Books] ")
    assert len(title_part) <= template.TITLE_CHARS and title_part.endswith("word")
    assert cut.endswith(" | brand: Acme | category: Poetry")


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

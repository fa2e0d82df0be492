"""The Edits page's numbers carry their caveats where they are shown: the units under each interval and a warning
when they are few, specificity with its interval (flagged when it lies below 1), a rate's change not coloured as an
improvement (about 0.5 is the most a complete edit reaches), the tables' specificities with their interval."""

from locolab.dashboard import battery_view, edit_tables, edit_view

# A small evaluation as the issue saw it: 4 prompts x 1 seed, 2 unrelated prompts.
SMALL = {"eval_id": "e1", "efficacy_score_drop": 0.91, "efficacy_score_drop_low": 0.62, "efficacy_score_drop_high": 1.2,
         "efficacy_score_drop_before": 0.0, "efficacy_prompt_rate": 0.5, "efficacy_prompt_rate_before": 0.0,
         "efficacy_prompt_rate_low": 0.15, "efficacy_prompt_rate_high": 0.85, "efficacy_prompts": 4,
         "efficacy_images": 4, "specificity": 0.79, "specificity_low": 0.70, "specificity_high": 0.88,
         "unrelated_prompts": 2}


def test_a_rate_rising_to_half_is_not_coloured_as_an_improvement():
    ((_, cards),) = [row for row in edit_view.metric_cards(SMALL) if row[0].startswith("Efficacy")]
    drop, rate = cards[0], cards[1]

    assert (rate["value"], rate["delta"], rate["color"], rate["arrow"]) == ("0.50", "+0.50 vs before", "off", "auto")
    assert "about 0.5 is the most a complete edit is expected to reach" in rate["help"]
    assert (drop["color"], drop["arrow"]) == ("normal", "auto")  # the score drop's rise is an improvement
    assert rate["help"].endswith("(4 units)")


def test_few_units_and_a_specificity_below_one_are_flagged():
    notes = edit_view.unit_notes(SMALL)

    assert notes[0] == ("Few units: efficacy · score drop from 4, efficacy · prompt rate from 4, specificity from 2. "
                        "An interval from fewer than 8 units covers less than its level (a 95% one about 87% from "
                        "4): evaluate with more seeds or prompts.")
    assert notes[1] == ("Flagged: specificity 0.79 [0.70, 0.88]: the unrelated prompts' scores fell (the interval "
                        "lies below 1).")
    assert edit_view.unit_notes({**SMALL, "efficacy_prompts": 8, "efficacy_images": 16, "unrelated_prompts": 12,
                                 "specificity_high": 1.02}) == []
    old = {"specificity": 0.79}  # evaluated before specificity intervals
    assert edit_view.unit_notes(old) == ["specificity 0.79 has no interval: evaluated before specificity intervals "
                                         "were recorded (evaluate the edit again)."]
    assert edit_view.unit_notes({"specificity": 0.79, "unrelated_prompts": 1}) == [
        "Few units: specificity from 1. An interval from fewer than 8 units covers less than its level (a 95% one "
        "about 87% from 4): evaluate with more seeds or prompts.",
        "specificity 0.79 has no interval: one prompt has no spread."]


def test_the_edit_tables_show_every_metric_with_its_interval_and_keep_the_numbers_for_the_csv():
    record = {"edit_id": "a-loco", "method": "loco", "layers": [8, 9], "evals": [SMALL], "eval": SMALL}
    row = edit_tables.summary_row(record)

    assert [row[column] for column in edit_tables.SHOWN_COLUMNS] == [0.91, None, "0.79 [0.70, 0.88]", None]
    assert (row["specificity"], row["specificity_low"], row["specificity_high"]) == (0.79, 0.70, 0.88)
    settings, rows = edit_tables.compared_rows([(record, {"specificity": 0.8, "unrelated_prompts": 12})])
    assert rows[0]["unrel. kept"] == "0.80 (none)"


def test_detection_rows_from_few_images_are_flagged():
    battery = {"detection": [{"group": "efficacy", "attribute": "style", "units": 4},
                             {"group": "unrelated", "attribute": "style", "units": 24},
                             {"group": "other", "attribute": "style", "units": 0}]}
    assert battery_view.few_units(battery) == (
        "Few images: efficacy style (4). A rate's interval from fewer than 8 images covers less than its level: "
        "evaluate with more seeds or prompts before reading a change as real.")
    assert battery_view.few_units({"detection": battery["detection"][1:]}) is None

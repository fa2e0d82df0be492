"""How one stored edit is shown (Edits and Run-an-edit pages): its settings, summary and before/after pairs."""


import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.names import EVAL_GROUPS, EVAL_METRICS
from locolab.contract.notation import layers_text
from locolab.contract.summaries import MIN_UNITS
from locolab.dashboard import battery_view, common, data
from locolab.dashboard.gallery_grid import Row, grid_html, thumb_side
from locolab.dashboard.gallery_view import cell

PAIRS_PER_PAGE = 48
SETTINGS = ("edit_id", "model", "family", "concept", "target", "method", "layers", "layer_paths", "modules", "lambda",
            "topk", "selection", "position", "positions", "preserve_prompts", "prompt_set", "source_prompts",
            "target_prompts", "bias_in_values", "created_at")


def edited(record: dict) -> str:
    """What an edit changed: its layers as runs ("layers 0–15", "layers 8–9, 12"), else the modules it names
    (DiffQuickFix: a text-encoder layer)."""
    if record.get("layers") is not None:
        return layers_text(record["layers"])
    return ", ".join(_short_module(name) for name in record.get("modules") or []) or "–"


def _short_module(name: str) -> str:
    """'text_encoder.encoder.layers.0.self_attn.out_proj' -> 'text_encoder layer 0 out_proj' (the settings table
    keeps the full path); a name without a numbered layer or block stays as it is."""
    parts = name.split(".")
    numbered = next((i for i, part in enumerate(parts[:-1])
                     if part in ("layers", "block") and parts[i + 1].isdigit()), None)
    return name if numbered is None else f"{parts[0]} layer {parts[numbered + 1]} {parts[-1]}"


def settings(record: dict) -> None:
    """The edit's sidecar (``edit.json``): the main settings, and everything in an expander."""
    shown = {**record, "layers": edited(record)} if record.get("layers") is not None else record
    st.dataframe([{"setting": key, "value": str(shown[key])} for key in SETTINGS if key in shown],
                 hide_index=True, width="stretch")
    with st.expander("Full record (edit.json)"):
        st.json({key: value for key, value in record.items() if key not in ("eval", "evals")}, expanded=False)


def metric_label(name: str) -> str:
    """'efficacy_score_drop' -> 'efficacy · score drop': the group, then which kind of number (tables)."""
    group, _, kind = name.partition("_")
    kind = kind.replace("_", " ")
    return f"{group} · {kind}" if kind in ("score drop", "prompt rate", "image rate") else name.replace("_", " ")


# The summary's rows of metric cards: (row heading, [(metric, its short label)]); the heading names the group once,
# so each card's label is short enough for a third of a 1280-px page.
METRIC_ROWS = (
    ("Efficacy: the edit's own prompts", (("efficacy_score_drop", "score drop"),
                                          ("efficacy_prompt_rate", "prompt rate"),
                                          ("efficacy_image_rate", "image rate"))),
    ("Generalization: held-out prompts", (("generalization_score_drop", "score drop"),
                                          ("generalization_prompt_rate", "prompt rate"),
                                          ("generalization_image_rate", "image rate"))),
    ("Specificity: after / before, 1 = kept", (("specificity", "unrelated"),
                                               ("other_concepts_retained", "other concepts"),
                                               ("new_fact_gain", "new fact gain"))),
)


# A rate of prompts or images below the target reference: about 0.5 is what a complete edit reaches (the images
# scatter around the target prompt's mean), so a rising rate is not coloured as an improvement past that.
RATE_NOTE = "; about 0.5 is the most a complete edit is expected to reach, so its change is not coloured"


def metric_cards(result: dict) -> list[tuple[str, list[dict]]]:
    """The summary's metric cards per row (``METRIC_ROWS``, metrics the evaluation lacks left out): each with a
    short ``label`` holding the interval, the ``value`` to two decimals, the change from before the edit as
    ``delta`` (None when not recorded), and ``color``/``arrow`` that stay neutral ("off") when the change rounds to
    zero; a rate's change is never coloured (``RATE_NOTE``)."""
    rows = []
    for heading, metrics in METRIC_ROWS:
        cards = []
        for name, short in metrics:
            value = result.get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            span = interval(result, name)
            before = result.get(f"{name}_before")
            change = value - before if isinstance(before, (int, float)) and not isinstance(before, bool) else None
            moved = change is not None and round(change, 2) != 0
            rate = name.endswith("_rate")
            units = metric_units(result, name)
            cards.append({"name": name, "label": short if span == "–" else f"{short} {span}",
                          "value": f"{value:.2f}", "delta": None if change is None else f"{change:+.2f} vs before",
                          "color": "normal" if moved and not rate else "off", "arrow": "auto" if moved else "off",
                          "help": EVAL_METRICS[name] + (RATE_NOTE if rate else "")
                          + (f" ({units} units)" if units is not None else "")})
        if cards:
            rows.append((heading, cards))
    return rows


def metric_units(result: dict, name: str) -> int | None:
    """The units a metric (and its interval) rests on: prompts for a prompt rate and specificity, images (prompt ×
    seed) for an image rate and a score drop; None when the evaluation does not record them."""
    group, _, kind = name.partition("_")
    key = {"prompt_rate": f"{group}_prompts", "image_rate": f"{group}_images", "score_drop": f"{group}_images"}.get(
        kind, {"specificity": "unrelated_prompts", "other_concepts_retained": "other_concepts_prompts"}.get(name))
    units = result.get(key) if key else None
    return units if isinstance(units, int) and not isinstance(units, bool) else None


def unit_notes(result: dict) -> list[str]:
    """Warnings about the evaluation's numbers: intervals from fewer than ``MIN_UNITS`` units (they cover less than
    their level), a specificity whose interval lies below 1 (the scores fell), and one with no interval."""
    notes = []
    few = [(metric_label(name), units) for name in EVAL_METRICS if isinstance(result.get(name), (int, float))
           and (units := metric_units(result, name)) is not None and units < MIN_UNITS]
    if few:
        notes.append("Few units: " + ", ".join(f"{label} from {units}" for label, units in few) + f". An interval "
                     f"from fewer than {MIN_UNITS} units covers less than its level (a 95% one about 87% from 4): "
                     "evaluate with more seeds or prompts.")
    for name, what in (("specificity", "unrelated prompts"), ("other_concepts_retained", "family's other concepts")):
        value, high = result.get(name), result.get(f"{name}_high")
        if not isinstance(value, (int, float)):
            continue
        if isinstance(high, (int, float)) and high < 1:
            notes.append(f"Flagged: {metric_label(name)} {value:.2f} {interval(result, name)}: the {what}' scores "
                         "fell (the interval lies below 1).")
        elif high is None:
            units = metric_units(result, name)
            notes.append(f"{metric_label(name)} {value:.2f} has no interval: "
                         + ("one prompt has no spread." if units == 1 else
                            "evaluated before specificity intervals were recorded (evaluate the edit again)."))
    return notes


def interval(result: dict, name: str) -> str:
    low, high = result.get(f"{name}_low"), result.get(f"{name}_high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    return f"[{low:.2f}, {high:.2f}]" if numbers else "–"


def settings_text(result: dict) -> str:
    """An evaluation's settings in one line (what identifies it, ``contract.names.EVAL_SETTINGS``)."""
    def number(key: str) -> str:
        value = result.get(key)
        return "?" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    counts = result.get("num_prompts") if isinstance(result.get("num_prompts"), dict) else {}
    unrelated = f"{counts.get('unrelated', 0)}{' (all)' if result.get('unrelated') is None else ''}"
    others = (f", {unrelated} unrelated prompts, {number('other_concepts')} other concepts"
              if "unrelated" in result else "")
    attack = result.get("attack")
    attacked = (f", recovery attack of {attack['steps']} steps and {attack['tokens']} soft token(s)"
                if isinstance(attack, dict) else "")
    return (f"scorer {result.get('scorer_id')}, seeds {result.get('seeds')}, {number('steps')} steps, guidance "
            f"{number('guidance')}, {number('width')}×{number('height')} px{others}{attacked}")


def choose_evaluation(record: dict, eval_id: str | None = None) -> dict | None:
    """The evaluation to show: ``eval_id``'s if given and present, else a picker when the edit has several (each
    set of settings is its own evaluation), else its only one; None before evaluation."""
    evals = record.get("evals") or []
    if not evals:
        return None
    by_id = {e.get("eval_id"): e for e in evals}
    if eval_id in by_id:
        return by_id[eval_id]
    if len(evals) == 1:
        return evals[0]
    labels = {e.get("eval_id"): f"{e.get('eval_id') or 'first evaluation'} · {settings_text(e)}"
              for e in evals[:bounds.MAX_OPTIONS]}
    chosen = st.selectbox(f"Evaluation ({len(evals)}, one per set of settings)", list(labels),
                          format_func=labels.get, key=f"eval_choice_{record['edit_id']}")
    return by_id[chosen]


def summary(record: dict, result: dict | None) -> None:
    """The summary metrics of one evaluation's ``eval.json``: per group the normalized score drop and the rates of
    prompts and images pushed below the target reference (each named, with its interval and its value before the
    edit), then specificity; a table holds every number, and the settings the evaluation used."""
    if not result:
        st.info("Not evaluated yet: run `python -m compute eval-edit "
                f"{record['edit_id']}` or launch it with evaluation from Run an edit.")
        return
    for heading, cards in metric_cards(result):
        st.markdown(f"**{heading}**")
        for column, card in zip(st.columns(3), cards):
            column.metric(card["label"], card["value"], card["delta"], delta_color=card["color"],
                          delta_arrow=card["arrow"], help=card["help"])
    for note in unit_notes(result):
        st.warning(common.escape(note))
    shown = [name for name in EVAL_METRICS if isinstance(result.get(name), (int, float))]
    st.dataframe([{"metric": metric_label(name), "value": result[name], "interval": interval(result, name),
                   "before": result.get(f"{name}_before"), "of": metric_units(result, name),
                   "what": EVAL_METRICS[name]} for name in shown], hide_index=True, width="stretch")
    which = f"evaluation {result['eval_id']}" if result.get("eval_id") else "evaluation"
    level = result.get("level")
    intervals = (f"; {level:.0%} intervals (rates: Wilson; score drop: bootstrap)" if isinstance(level, float)
                 else "; evaluated before intervals were recorded")
    st.caption(common.escape(f"{which}: {settings_text(result)}{intervals}"))


def group_label(group: str) -> str:
    """A prompt group's tab label: its description (``EVAL_GROUPS``), or a stored name shown literally (tab labels
    are Markdown)."""
    return common.escape(EVAL_GROUPS.get(group, group))


def pair_rows(snap: data.Snapshot, rows: list[dict]) -> list[Row]:
    """One grid block per before/after pair: the prompt and seed, both images at pixel size, both scores and their
    change."""
    side = thumb_side(2 * len(rows))
    blocks = []
    for row in rows:
        delta = "–" if row["delta"] is None else f"{row['delta']:+.4f}"
        cells = [cell(snap, {"image_path": row[f"{when}_image"]}, f"{when} {common.score_text(row[when])}", side)
                 for when in ("before", "after")]
        blocks.append(Row(f"“{row['prompt']}” · seed {row['seed']}", cells, f"score change {delta}"))
    return blocks


def pairs(snap: data.Snapshot, edit_id: str, eval_id: str | None, battery: dict | None = None) -> None:
    """Before/after image pairs of one evaluation, one tab per prompt group: a compact grid of the group's pairs
    (images at pixel size, both scores and their change) and, beside it, the group's rows of the evaluation battery
    (each detector's rate before and after, with intervals)."""
    table = data.query(snap, queries.edit_pairs, edit_id, eval_id).to_pylist()
    if not table:
        st.caption("No evaluation images stored for this edit.")
        return
    groups = [g for g in EVAL_GROUPS if any(r["group"] == g for r in table)]
    groups += sorted({r["group"] for r in table} - set(groups))
    detection = battery_view.detection_rows(battery) if battery else []
    for tab, group in zip(st.tabs([group_label(g) for g in groups]), groups):
        with tab:
            rows = [r for r in table if r["group"] == group]
            deltas = [r["delta"] for r in rows if r["delta"] is not None]
            pages = max(1, -(-len(rows) // PAIRS_PER_PAGE))
            page = st.pagination(pages, key=f"pairs_{edit_id}_{eval_id}_{group}") if pages > 1 else 1
            mean = f" · mean score change {sum(deltas) / len(deltas):+.4f}" if deltas else ""
            st.html(grid_html(["before", "after"], pair_rows(snap, rows[(page - 1) * PAIRS_PER_PAGE:
                                                                         page * PAIRS_PER_PAGE]),
                              f"{len(rows)} pairs (the same prompt and seed before and after the edit){mean}"))
            found = [r for r in detection if r["group"] == group]
            if found:
                st.dataframe(found, hide_index=True, width="stretch",
                             column_config={"change": st.column_config.TextColumn("change",
                                                                                  help=battery_view.BATTERY_HELP)})


# What must match for a comparison of methods to be fair (besides the evaluation's settings, which the page matches).
COMPARED = ("target", "key positions", "preserve others", "λ / top-k", "seeds", "preservation set")


def compared_settings(record: dict, evaluation: dict | None) -> dict:
    """The settings of one edit and its evaluation that a comparison of methods depends on: its target, the key
    positions of a closed form, whether it preserved the family's other concepts (and how many prompts), its
    ridge weight λ (neuron: top-k units), the evaluation's seeds and the size of its preservation set (the unrelated
    prompts specificity is measured on)."""
    evaluation = evaluation or {}
    counts = evaluation.get("num_prompts") if isinstance(evaluation.get("num_prompts"), dict) else {}
    preserved = record.get("preserve_prompts") or []
    weight = f"top-k {record['topk']}" if record.get("method") == "neuron" and "topk" in record else \
        f"λ {record['lambda']:g}" if isinstance(record.get("lambda"), (int, float)) else "–"
    return {"target": str(record.get("target") or "–"),
            "key positions": str(record.get("positions") or "–"),
            "preserve others": f"yes ({len(preserved)} prompts)" if preserved else "no",
            "λ / top-k": weight,
            "seeds": ", ".join(map(str, evaluation.get("seeds") or [])) or "–",
            "preservation set": f"{counts['unrelated']} unrelated prompts" if "unrelated" in counts else "–"}


def differing(rows: list[dict]) -> list[str]:
    """The ``COMPARED`` settings that differ between the rows (``compared_settings`` of the compared edits)."""
    return [name for name in COMPARED if len({row.get(name) for row in rows}) > 1]


def side_by_side(snap: data.Snapshot, compared: list[tuple[dict, dict]], key: str) -> None:
    """The compared methods' images for the same prompts: one prompt (chosen by group and prompt), one row per seed,
    the unedited image once (every compared evaluation used the same settings, so the same unedited images) and
    each method's edited image beside it, with scores."""
    tables = {r["edit_id"]: data.query(snap, queries.edit_pairs, r["edit_id"], e.get("eval_id")).to_pylist()
              for r, e in compared}
    first = tables[compared[0][0]["edit_id"]]
    # Only prompts every compared edit was evaluated on (the efficacy prompts are each method's own keys).
    shared = set.intersection(*({(row["group"], row["prompt"]) for row in rows} for rows in tables.values()))
    groups = [g for g in EVAL_GROUPS if any(group == g for group, _ in shared)]
    if not groups:
        st.caption("The compared edits share no evaluation prompt.")
        return
    pick_group, pick_prompt = st.columns([1, 2])
    group = pick_group.selectbox("Prompt group", groups, format_func=lambda g: EVAL_GROUPS.get(g, g),
                                 key=f"{key}_group", help="Groups with prompts every compared edit was evaluated on.")
    prompts = list(dict.fromkeys(row["prompt"] for row in first if (row["group"], row["prompt"]) in shared
                                 and row["group"] == group))
    prompt = pick_prompt.selectbox("Prompt", prompts[:bounds.MAX_OPTIONS], key=f"{key}_prompt_{group}")
    seeds = sorted({row["seed"] for row in first if row["group"] == group and row["prompt"] == prompt})
    headers = ["before (unedited)"] + [f"after: {r['method']}" for r, _ in compared]
    for column, header in zip(st.columns(len(headers) + 1)[1:], headers):
        column.markdown(f"**{common.escape(header)}**")
    for seed in seeds[:bounds.MAX_SEEDS]:
        found = {edit_id: next((row for row in rows if (row["group"], row["prompt"], row["seed"]) ==
                                (group, prompt, seed)), None) for edit_id, rows in tables.items()}
        reference = found[compared[0][0]["edit_id"]]
        columns = st.columns(len(headers) + 1)
        columns[0].markdown(f"seed {seed}")
        with columns[1]:
            common.image(reference and reference["before_image"],
                         f"score {common.score_text(reference and reference['before'])}")
        for column, (r, _) in zip(columns[2:], compared):
            row = found[r["edit_id"]]
            with column:
                common.image(row and row["after_image"], f"score {common.score_text(row and row['after'])}")

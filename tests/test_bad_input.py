"""Bad input through the real CLI (issue 13): every case answers with exit code 2 and exactly one line on stderr that
names the problem, no traceback, and leaves every file as it was (the artifact root byte for byte, no output folder).
The table runs in-process through ``compute.cli.main``, the code path of the console script; a few cases run as real
subprocesses to hold the promise at the process boundary; property-based tests throw random values at the numeric
options and config fields."""

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweep_helpers import SMALL

from locolab.compute.cli import main
from locolab.contract.store import write_table

REPO = Path(__file__).resolve().parent.parent
EDIT = ["edit", "--model", "tiny-sd1", "--family", "style", "--concept", "van gogh", "--layers", "8,9"]
GENERATE = ["generate", "--model", "tiny-sd1", "--prompt", "a house", "--target", "a painting", "--window", "8:10"]
STYLE = SMALL["families"]["style"]
CONFIGS = {
    "resolution-60": {"resolution": 60},
    "seed-overflow": {"seeds": [99999999999999999999]},
    "guidance-nan": {"guidance": math.nan},
    "unknown-field": {"families": {"style": {**STYLE, "templates": ["a {style} painting of {concept}"]}}},
    "score-text-typo": {"families": {"style": {**STYLE, "score_text": "style of {concpet}"}}},
    "unknown-model": {"model": "sd-9"},
    "template-twice": {"families": {"style": {**STYLE, "templates": [STYLE["templates"][0]] * 2}}},
}
# Configs as text, for what a YAML dump cannot write: a key twice; aliases nested nine deep (a "billion laughs" of 10^9
# strings, a few hundred bytes on disk).
LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
RAW_CONFIGS = {
    "seeds-twice": yaml.safe_dump(SMALL) + "seeds: [1]\n",
    "alias-bomb": yaml.safe_dump(SMALL) + "description:\n  l0: &l0 lol\n" + "".join(
        "  " + line + "\n" for line in LAUGHS.splitlines()),
}


def files(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``: relative path -> digest of its bytes ('dir' for folders)."""
    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder holding an artifact root with a real edit, an edit whose record is cut off, and a runs part; a root
    from a newer LocoLab; pipeline folders with broken JSON; a plain file; and the sweep configs of the table."""
    base = tmp_path_factory.mktemp("bad-input")
    root = base / "root"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*EDIT, "--artifacts", str(root)]) == 0
    (edit,) = (root / "edits").iterdir()
    cut = root / "edits" / "van-gogh-loco-cutcutcut0"
    shutil.copytree(edit, cut)
    record = (cut / "edit.json").read_text().replace(edit.name, cut.name)
    (cut / "edit.json").write_text(record[:len(record) // 2])
    write_table("runs", [{"run_id": "old", "config_name": "old", "model": "tiny-sd1", "status": "finished"}],
                "old-0of1", root=root)
    newer = base / "newer"
    shutil.copytree(root, newer)
    pq.write_table(pa.table({"schema_version": pa.array([99], pa.int32()), "run_id": ["future"]}),
                   newer / "tables" / "runs" / "part-future.parquet")
    for name, index, unet in (("bad-index", '{"_class_name": "StableDiff', None),
                              ("bad-unet", json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"]}), "{sample")):
        (base / name).mkdir()
        (base / name / "model_index.json").write_text(index)
        if unet:
            (base / name / "unet").mkdir()
            (base / name / "unet" / "config.json").write_text(unet)
    (base / "a-file").write_text("not a folder")
    for name, changes in CONFIGS.items():
        (base / f"{name}.yaml").write_text(yaml.safe_dump({**SMALL, **changes}))
    (base / "good.yaml").write_text(yaml.safe_dump(SMALL))
    for name, text in RAW_CONFIGS.items():
        (base / f"{name}.yaml").write_text(text)
    return base


def _edit_id(world: Path) -> str:
    return next(p.name for p in (world / "root" / "edits").iterdir() if "cut" not in p.name)


# (arguments, with {w} the world folder and {edit} the real edit's id; a fragment the one line must hold)
CASES = [
    (["layers", "--model", "{w}/bad-index"], "bad-index/model_index.json is not readable JSON"),
    (["layers", "--model", "{w}/bad-unet"], "bad-unet/unet/config.json is not readable JSON"),
    (["layers", "--model", "tiny-sd1", "--device", "bogus"], "unknown device 'bogus'"),
    pytest.param(["layers", "--model", "tiny-sd1", "--device", "cuda"], "this machine has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    ([*GENERATE, "--out", "{w}/out", "--batch-size", "0"], "argument --batch-size: expected an integer from 1"),
    (["eval-edit", "{edit}", "--artifacts", "{w}/root", "--batch-size", "0"], "argument --batch-size"),
    (["eval-edit", "{edit}", "--artifacts", "{w}/root", "--dtype", "bfloat16"],
     "was made in float32 weights and is evaluated in them: drop --dtype or pass --dtype float32"),
    ([*GENERATE, "--out", "{w}/out", "--size", "60"], "argument --size: expected a multiple of 8"),
    ([*GENERATE, "--out", "{w}/out", "--size", "-64"], "argument --size: expected a multiple of 8"),
    (["sweep", "{w}/resolution-60.yaml", "--artifacts", "{w}/root"], "resolution: expected a multiple of 8"),
    ([*GENERATE, "--out", "{w}/out", "--seeds", "99999999999999999999"], "argument --seeds"),
    (["sweep", "{w}/seed-overflow.yaml", "--artifacts", "{w}/root"], "seeds[0]: expected an integer from 0"),
    ([*GENERATE, "--out", "{w}/out", "--seeds", ",".join(map(str, range(20000)))],
     "60,000 images, more than the cap of 10,000: use fewer seeds (or prompts, windows, concepts), or pass "
     "--allow-many-images"),
    ([*GENERATE, "--out", "{w}/a-file/out"], "a-file is a file, not a folder"),
    ([*GENERATE, "--out", "/proc/locolab/out"], "--out /proc/locolab/out: cannot write in /proc"),
    (["sweep", "{w}/good.yaml", "--artifacts", "{w}/a-file"], "artifact root {w}/a-file is a file, not a folder"),
    ([*EDIT, "--artifacts", "{w}/a-file"], "artifact root {w}/a-file is a file, not a folder"),
    (["sweep", "{w}/unknown-field.yaml", "--dry-run"], "names {{style}}, which is not filled in"),
    (["sweep", "{w}/score-text-typo.yaml", "--dry-run"], "families.style.score_text: 'style of {{concpet}}' names"),
    (["eval-edit", "van-gogh-loco-cutcutcut0", "--artifacts", "{w}/root"],
     "edit van-gogh-loco-cutcutcut0 under {w}/root/edits is damaged"),
    ([*GENERATE, "--out", "{w}/out", "--steps", "-1"], "argument --steps: expected an integer from 1 to 1000"),
    ([*GENERATE, "--out", "{w}/out", "--steps", "0"], "argument --steps: expected an integer from 1 to 1000, got '0'"),
    (["sweep", "{w}/guidance-nan.yaml", "--artifacts", "{w}/root"],
     "guidance: expected a number >= 0 (finite), got nan"),
    (["trace", "{w}/good.yaml", "--noise", "nan", "--artifacts", "{w}/root"], "argument --noise"),
    ([*EDIT, "--lambda", "inf", "--artifacts", "{w}/root"], "argument --lambda: expected a number > 0 (finite)"),
    ([*EDIT, "--eval", "--unrelated", "-5", "--artifacts", "{w}/root"], "argument --unrelated"),
    ([*EDIT, "--eval", "--other-concepts", "-1", "--artifacts", "{w}/root"], "argument --other-concepts"),
    ([*EDIT, "--layers", "4,5", "--eval", "--seeds", "x", "--artifacts", "{w}/root"], "argument --seeds"),
    ([*EDIT, "--eval", "--attack", "--attack-steps", "-1", "--artifacts", "{w}/root"],
     "argument --attack-steps: expected an integer from 0 to 100000, got '-1'"),
    ([*EDIT, "--eval", "--attack", "--attack-tokens", "0", "--artifacts", "{w}/root"],
     "argument --attack-tokens: expected an integer from 1 to 16, got '0'"),
    ([*EDIT, "--eval", "--attack-tokens", "2", "--artifacts", "{w}/root"],
     "--attack-steps and --attack-tokens set the recovery attack: add --attack, or drop them"),
    (["eval-edit", "{edit}", "--artifacts", "{w}/root", "--attack-steps", "9"], "add --attack, or drop them"),
    (["edit", "--model", "tiny-sdxl", "--family", "style", "--concept", "van gogh", "--layers", "8,9", "--eval",
      "--attack", "--artifacts", "{w}/root"], "tiny-sdxl (sdxl) conditions on more than that: drop --attack"),
    ([*EDIT, "--layers", "4,5", "--eval", "--scorer", "/nowhere/clip", "--artifacts", "{w}/root"],
     "CLIP scorer directory /nowhere/clip does not exist"),
    (["sweep", "{w}/good.yaml", "--artifacts", "{w}/newer"], "written by a newer LocoLab (schema v99 > v3)"),
    ([*EDIT, "--layers", "4,5", "--artifacts", "{w}/newer"], "written by a newer LocoLab"),
    (["eval-edit", "../../etc", "--artifacts", "{w}/root"], "'../../etc' is not an edit id"),
    (["sweep", "{w}/unknown-model.yaml", "--artifacts", "{w}/root"], "unknown model 'sd-9'"),
    (["sweep", "{w}/good.yaml", "--shard", "2/2"], "bad --shard '2/2': need 0 <= I < N"),
    (["generate", "--model", "tiny-sd1"], "the following arguments are required"),
    # Issue 25: accepted until then, each doing something other than asked.
    ([*EDIT, "--method", "neuron", "--topk", "0", "--artifacts", "{w}/root"],
     "argument --topk: expected an integer from 1 to 1000000, got '0'"),
    (["contribution", "tiny-pixart", "--top-k", "999", "--artifacts", "{w}/root"],
     "top-k 999 exceeds the 28 text-reading sites of tiny-pixart: use k from 1 to 28"),
    (["contribution", "tiny-pixart", "--top-k", "28,999", "--dry-run"], "top-k 999 exceeds the 28"),
    (["sweep", "{w}/seeds-twice.yaml", "--artifacts", "{w}/root"],
     "not valid YAML (key 'seeds' given twice in one mapping (line 27): keep one)"),
    (["sweep", "{w}/template-twice.yaml", "--artifacts", "{w}/root"], "families.style.templates: duplicate templates"),
    (["sweep", "{w}/alias-bomb.yaml", "--dry-run"], "aliases are not accepted, write the value out"),
    ([*GENERATE, "--window", "8:10", "--out", "{w}/out"], "--window 8:10 is given twice: give each window once"),
    (["--status-file", "{w}/root", "layers", "--model", "tiny-sd1"], "exists and is not a regular file"),
    (["summary", "--artifacts", "{w}/root", "--min-units", "1"], "argument --min-units: expected an integer from 2"),
    (["summary", "--artifacts", "{w}/root", "--cluster-prompts", "1"], "argument --cluster-prompts: expected an"),
    (["summary", "--artifacts", "{w}/root", "--adjust", "bonferroni"], "argument --adjust: invalid choice"),
]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("argv, fragment", CASES)
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, argv, fragment):
    fill = {"w": str(world), "edit": _edit_id(world)}
    before = files(world)

    code, out, err = run([arg.format(**fill) for arg in argv])

    assert_refused(code, err, fragment.format(**fill))
    assert out == ""
    assert files(world) == before


def test_with_the_flag_the_image_cap_is_passed(world):
    """The cap names its flag, and the flag lets the same command through to its next check."""
    code, _, err = run([*GENERATE, "--out", str(world / "a-file" / "out"), "--seeds", ",".join(map(str, range(20000))),
                        "--allow-many-images"])

    assert_refused(code, err, "a-file is a file, not a folder")


def test_a_config_that_fails_leaves_no_run_or_layer_rows(world, tmp_path):
    root = tmp_path / "root"
    for name in ("resolution-60", "guidance-nan", "seed-overflow"):
        code, _, err = run(["sweep", str(world / f"{name}.yaml"), "--artifacts", str(root)])
        assert_refused(code, err, f"{name}.yaml")
    assert not root.exists()


def test_verify_names_a_damaged_edit_and_changes_nothing(world):
    before = files(world)

    code, out, err = run(["verify", "--artifacts", str(world / "root")])

    assert (code, err) == (1, "")
    assert "edit van-gogh-loco-cutcutcut0: unreadable (JSONDecodeError" in out
    assert "make the edit again" in out
    assert files(world) == before


def test_a_status_file_that_is_a_named_pipe_is_refused_and_kept(tmp_path):
    fifo = tmp_path / "status"
    os.mkfifo(fifo)

    code, _, err = run(["--status-file", str(fifo), "layers", "--model", "tiny-sd1"])

    assert_refused(code, err, f"--status-file {fifo} exists and is not a regular file")
    assert fifo.is_fifo()


@pytest.mark.slow
def test_ctrl_c_during_a_sweep_is_one_line_exit_130_and_the_status_says_so(tmp_path, monkeypatch):
    from sweep_helpers import write_config

    from locolab.compute.sweep import run as sweep_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_run, "generate_batch", interrupted)
    status = tmp_path / "status.json"
    try:
        code, _, err = run(["--status-file", str(status), "sweep", write_config(tmp_path / "c.yaml"), "--artifacts",
                            str(tmp_path / "root"), "--no-progress"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left main as a traceback")

    assert (code, err) == (130, "interrupted; rerun to resume\n")
    assert json.loads(status.read_text())["stage"] == "interrupted"


@pytest.mark.slow  # a fresh interpreter
@pytest.mark.heavy  # 15 s or more under make test's load: make test-heavy
def test_a_closed_output_pipe_is_named_as_such(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "locolab", "layers", "--model", "tiny-sd1"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the first line
    err = process.stderr.read()
    assert process.wait() == 141, err
    assert err.startswith("error: the output pipe closed before the command finished") and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.heavy  # 15 s or more under make test's load: make test-heavy
def test_the_process_boundary_keeps_the_promise(world):
    """As real processes (the module and the console script): exit status 2 and one line on stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("locolab")
    commands = [  # two, each a cold start of torch and diffusers (~5 s alone, much more on a busy machine)
        ([sys.executable, "-m", "locolab", *GENERATE, "--out", str(world / "out"), "--steps", "0"], "argument --steps"),
        ([str(script) if script.exists() else sys.executable, *([] if script.exists() else ["-m", "locolab"]),
          "eval-edit", "van-gogh-loco-cutcutcut0", "--artifacts", str(world / "root")], "is damaged"),
    ]
    before = files(world)
    processes = [(subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                  fragment) for argv, fragment in commands]
    for process, fragment in processes:
        out, err = process.communicate(timeout=300)
        assert_refused(process.returncode, err, fragment)
        assert out == ""
    assert files(world) == before


# Property-based: random values for numeric options and config fields. Each command line below fails after parsing
# for any value that passes (an unknown model or edit), so a valid value is never run; the property is that an
# invalid value is refused at the boundary, by name, in one line, and a valid one passes the boundary.

def _int_in(low: int, high: int, multiple: int = 1):
    def accepts(text: str) -> bool:
        try:
            value = int(text)
        except ValueError:
            return False
        return low <= value <= high and value % multiple == 0
    return accepts


def _float(above: float | None = None, low: float | None = None):
    def accepts(text: str) -> bool:
        try:
            value = float(text)
        except ValueError:
            return False
        return math.isfinite(value) and (above is None or value > above) and (low is None or value >= low)
    return accepts


def _seeds(text: str) -> bool:
    parts = [part for part in text.split(",") if part.strip()]
    return bool(parts) and all(_int_in(0, 2**63 - 1)(part) for part in parts) and len(set(map(int, parts))) == len(
        parts)


MILLION = 1_000_000
EVAL_EDIT = ["eval-edit", "no-such-edit", "--artifacts={w}/root"]
EDIT_UNKNOWN = ["edit", "--model", "sd-9", "--family", "style", "--concept", "c", "--layers", "8", "--eval",
                "--artifacts={w}/root"]
OPTIONS = {  # option: (command line that fails after parsing, what a valid value is)
    "--steps": (["generate", "--model", "sd-9", "--prompt", "a", "--target", "b", "--window", "8:10"],
                _int_in(1, 1000)),
    "--guidance": (["generate", "--model", "sd-9", "--prompt", "a", "--target", "b", "--window", "8:10"],
                   _float(low=0)),
    "--size": (["generate", "--model", "sd-9", "--prompt", "a", "--target", "b", "--window", "8:10"],
               _int_in(8, 4096, 8)),
    "--window-size": (["generate", "--model", "sd-9", "--prompt", "a", "--target", "b"], _int_in(1, MILLION)),
    "--seeds": (EVAL_EDIT, _seeds),
    "--batch-size": (EVAL_EDIT, _int_in(1, 4096)),
    "--unrelated": (EVAL_EDIT, _int_in(0, MILLION)),
    "--other-concepts": (EVAL_EDIT, _int_in(0, MILLION)),
    "--attack-steps": ([*EVAL_EDIT, "--attack"], _int_in(0, 100_000)),
    "--attack-tokens": ([*EVAL_EDIT, "--attack"], _int_in(1, 16)),
    "--lambda": (EDIT_UNKNOWN, _float(0)),
    "--threshold": (EDIT_UNKNOWN, _float(0)),
    "--topk": (EDIT_UNKNOWN, _int_in(1, MILLION)),
    "--noise": (["trace", "{w}/unknown-model.yaml", "--artifacts={w}/root"], _float(low=0)),
    "--limit": (["sweep", "{w}/unknown-model.yaml", "--dry-run", "--artifacts={w}/root"], _int_in(1, MILLION)),
}
VALUES = st.one_of(st.integers(-(10**22), 10**22).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["", "abc", "1e3", "0x10", "1_000", "8.0", "+7", " 16 ", "1,2", "nan", "-inf"]))
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(option=st.sampled_from(sorted(OPTIONS)), value=VALUES)
@pytest.mark.slow
def test_random_option_values_are_refused_by_name_or_pass_the_boundary(world, option, value):
    argv, accepts = OPTIONS[option]
    before = files(world / "root")

    code, out, err = run([arg.format(w=world) for arg in argv] + [f"{option}={value}"])

    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    named = f"argument {option}:" in err
    assert named != accepts(value), (value, err)
    assert files(world / "root") == before


def _config_accepts(field: str, value) -> bool:
    def integer(low, high, multiple=1):
        return type(value) is int and low <= value <= high and value % multiple == 0

    def number(above=None, low=None):
        return (type(value) in (int, float) and math.isfinite(value) and (above is None or value > above)
                and (low is None or value >= low))

    return {"steps": lambda: value is None or integer(1, 1000), "guidance": lambda: value is None or number(low=0),
            "resolution": lambda: value is None or integer(8, 4096, 8),
            "batch_size": lambda: value is None or integer(1, 4096), "seeds": lambda: integer(0, 2**63 - 1),
            "window_sizes": lambda: integer(1, 16), "trace.noise": lambda: value is None or number(low=0)}[field]()


CONFIG_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(10**22), 10**22),
                          st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", "8", "abc", [1], {}]))


@PROPERTY
@given(field=st.sampled_from(["steps", "guidance", "resolution", "batch_size", "seeds", "window_sizes",
                              "trace.noise"]), value=CONFIG_VALUES)
@pytest.mark.slow
def test_random_config_values_are_refused_by_key_or_planned(world, tmp_path, field, value):
    config = dict(SMALL)
    if field == "trace.noise":
        config["trace"] = {"noise": value}
    else:
        config[field] = [value] if field in ("seeds", "window_sizes") else value
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(config))
    root = tmp_path / "never-written"

    code, out, err = run(["sweep", str(path), "--dry-run", "--artifacts", str(root)])

    assert "Traceback" not in err
    if _config_accepts(field, value):
        assert (code, err) == (0, ""), err
        assert "work units" in out
    else:
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f": {field}" in err, err
    assert not root.exists()

"""A run records its embedded model's weights; a retrained model (same name, other weights) cannot resume it."""

import shutil

import pytest

from locolab.compute.paths import PACKAGE_DIR
from locolab.compute.provenance import fingerprint


def test_the_fingerprint_follows_the_bytes_and_names_of_the_weights(tmp_path):
    folder = tmp_path / "unet"
    shutil.copytree(PACKAGE_DIR / "checkpoints" / "toyworld-planted-a", folder)
    before = fingerprint([folder])
    assert before == fingerprint([PACKAGE_DIR / "checkpoints" / "toyworld-planted-a"])
    (folder / "plan.json").write_text("{}")  # not weights
    assert fingerprint([folder]) == before
    weights = folder / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert fingerprint([folder]) != before
    assert fingerprint([PACKAGE_DIR / "checkpoints" / "toyworld-planted-b"]) != before


@pytest.mark.slow  # one unit of a toy-world study, twice
def test_a_run_made_with_other_weights_of_its_model_is_not_resumed(tmp_path):
    from locolab.compute.benchmark import study
    from locolab.compute.models.loading import load_model
    from locolab.compute.provenance import weights_fingerprint
    from locolab.compute.runner import Context, run
    from locolab.contract.errors import UserError
    from locolab.contract.store import Store

    spec = study("toyworld-planted-a", (0,), ("style",), (1,), concepts=1)
    context = Context(str(tmp_path), limit=1, progress=False)
    model = load_model("toyworld-planted-a", device="cpu")
    run(spec, model, context)
    recorded = Store(tmp_path).connect().sql("SELECT DISTINCT json_extract_string(config_json, '$.weights') "
                                             "FROM runs").fetchall()
    assert recorded == [(weights_fingerprint(model.spec),)]
    assert run(spec, model, context).stats.units_skipped == 1  # the same weights resume
    retrained = load_model("toyworld-planted-b", device="cpu")  # what toyworld-planted-a's folder would now hold
    with pytest.raises(UserError, match=f"run {spec.run_id} in .* was made with other weights of toyworld-planted-a "
                                        r"\(.*\): .* use a fresh artifact root"):
        run(spec, retrained, context)


def test_resuming_a_run_that_predates_the_fingerprint_warns_and_other_weights_refuse(tmp_path):
    import warnings
    from datetime import UTC, datetime

    from locolab.compute.benchmark import study
    from locolab.compute.sweep.run import check_weights, write_run_row
    from locolab.contract.errors import UserError

    config = study("toyworld-planted-a", (0,), ("style",), (1,), concepts=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_weights(config, str(tmp_path), "0123456789abcdef")  # nothing to resume: silent
    write_run_row(config, str(tmp_path), 0, 1, "running", datetime.now(UTC), {}, {}, {"noise": "philox"})
    with pytest.warns(UserWarning, match=f"run {config.run_id} in .* recorded no weights fingerprint .* these weights "
                                         r"of toyworld-planted-a \(0123456789abcdef\); if it was retrained since"):
        check_weights(config, str(tmp_path), "0123456789abcdef")
    write_run_row(config, str(tmp_path), 1, 2, "running", datetime.now(UTC), {}, {}, {"weights": "fedcba9876543210"})
    with pytest.raises(UserError, match=r"other weights of .* \(fedcba9876543210, now 0123456789abcdef\)"):
        check_weights(config, str(tmp_path), "0123456789abcdef")

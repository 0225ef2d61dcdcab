"""The noise version through the API and cgan-run: version 2 by default, version 1 on request, recorded with the output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _cli import call_main
from _models import gen, model, model_file  # noqa: F401 - fixtures (gen takes model)
from cgan.runtime.api import GenerateError
from cgan.runtime.cli import main
from cgan.runtime.contract import noise


def _session_images(gen, z, stage):
    return gen.to_uint8(gen._session.run(z, np.full(len(z), stage, dtype=np.int64)))


@pytest.mark.parametrize("version", [1, 2])
def test_api_draws_the_noise_of_the_version_asked(gen, version):
    got = gen.generate(1, 5, seed=4, start=2, noise_version=version, batch_size=2)
    np.testing.assert_array_equal(got, _session_images(gen, noise(4, 2, 5, gen.info.z_dim, version), 1))
    batches = list(gen.batches(1, 5, seed=4, start=2, noise_version=version))
    assert {b.noise_version for b in batches} == {version}


def test_api_default_is_version_2(gen):
    np.testing.assert_array_equal(gen.generate(0, 3, seed=9), gen.generate(0, 3, seed=9, noise_version=2))
    assert not np.array_equal(gen.generate(0, 3, seed=9), gen.generate(0, 3, seed=9, noise_version=1))
    with pytest.raises(GenerateError, match="unknown noise version 3"):
        gen.generate(0, 1, noise_version=3)
    with pytest.raises(GenerateError, match="below 2\\^64"):
        gen.generate(0, 1, seed=2**64)


def _run(*args):
    return call_main(main, [*args, "--model", str(model_file("gen32")), "--quiet"])


def test_cgan_run_records_the_version_and_regenerates_version_1(tmp_path, gen):
    for version in (None, "1"):
        out = tmp_path / f"v{version}"
        extra = ("--noise-version", version) if version else ()
        result = _run("--stage", "2", "--n", "3", "--seed", "5", "--out", str(out), *extra)
        assert result.exit_code == 0, result.output
        expected = gen.generate(2, 3, seed=5, noise_version=int(version or 2))
        for k in range(3):
            with Image.open(out / f"stage2_seed5_{k:08d}.png") as im:
                np.testing.assert_array_equal(np.asarray(im), expected[k])
                assert im.text["cgan.noise_version"] == (version or "2")


def test_npy_sidecar_records_the_version(tmp_path):
    result = _run("--stage", "0", "--n", "2", "--format", "npy", "--noise-version", "1", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "stage0_seed0_00000000-00000001.json").read_text())
    assert meta["noise_version"] == 1 and meta["run"]["noise_version"] == 1


def test_unknown_version_is_one_line(tmp_path):
    result = _run("--noise-version", "3", "--out", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "unknown --noise-version 3; expected one of 1, 2" in result.output
    assert not (tmp_path / "x").exists()

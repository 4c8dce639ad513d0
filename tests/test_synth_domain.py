"""SynthGait domains: street-camera tracks for training and a held-out domain for measuring transfer."""
import json

import numpy as np
import pytest

from gaitrec.data.dataset import open_source, read_partition
from gaitrec.errors import ConfigError
from gaitrec.synth.domain import DOMAINS, domain_pairs, draw_conditions, generate_domain_dataset, render_track


@pytest.mark.parametrize("domain", ["street", "heldout"])
def test_tracks_are_deterministic_aligned_and_differ_between_walks(domain):
    first = render_track(domain, seed=3, index=5, walk=0)
    assert np.array_equal(first, render_track(domain, seed=3, index=5, walk=0))
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[1:] == (64, 64) and len(first) >= 4
    assert first.max() == 255 and first[:, :, :4].max() == 0  # centred by align_frame: empty borders
    other = render_track(domain, seed=3, index=5, walk=1)
    assert first.shape != other.shape or not np.array_equal(first, other)
    assert not np.array_equal(first[:4], render_track(domain, seed=4, index=5, walk=0)[:4])


@pytest.mark.parametrize("domain", ["street", "heldout"])
def test_conditions_stay_in_the_domain_ranges(domain):
    spec = DOMAINS[domain]
    for k in range(200):
        c = draw_conditions(spec, np.random.default_rng(k))
        assert 0 <= c.azimuth < 360 and spec.elevation[0] <= c.elevation <= spec.elevation[1]
        assert 0 <= c.elevation_end <= 70 and abs(c.elevation_end - c.elevation) <= max(map(abs, spec.elevation_sweep))
        assert spec.body_pixels[0] <= c.body_pixels <= spec.body_pixels[1]
        assert c.fps in spec.fps and spec.speed[0] <= c.speed <= spec.speed[1]
        assert spec.seconds[0] * c.fps - 1 <= c.frames <= spec.seconds[1] * c.fps + 1
        assert c.walk_type in ("nm-01", "bg-01", "cl-01")
    street = [draw_conditions(DOMAINS["street"], np.random.default_rng(k)) for k in range(200)]
    assert min(c.elevation for c in street) < 10 and max(c.elevation for c in street) > 35  # randomised
    assert len({c.fps for c in street}) > 1 and max(c.body_pixels for c in street) > 4 * min(c.body_pixels for c in street)


def test_unknown_domain_is_refused():
    with pytest.raises(ConfigError, match="unknown SynthGait domain"):
        render_track("studio", 0, 0, 0)


def test_dataset_layout_is_listed_and_reused(tmp_path):
    out = tmp_path / "street"
    summary = generate_domain_dataset(out, "street", subjects=3, walks=2, seed=1, progress=False)
    source = open_source(out)
    assert {s.subject for s in source.sequences} == {"001", "002", "003"}
    assert {s.type for s in source.sequences} <= {"nm-01", "nm-02"} and len(source.sequences) == summary["sequences"]
    assert source.load(0).shape[1:] == (64, 64)
    partition = read_partition(out / "partition.json")
    assert partition["TRAIN_SET"] == ["001", "002"] and partition["TEST_SET"] == ["003"]
    assert json.loads((out / "synthgait-domain.json").read_text())["parameters"]["domain"] == "street"
    assert generate_domain_dataset(out, "street", subjects=3, walks=2, seed=1, progress=False)["reused"]
    with pytest.raises(ConfigError, match="other parameters"):
        generate_domain_dataset(out, "street", subjects=4, walks=2, seed=1, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("keep")
    with pytest.raises(FileExistsError):
        generate_domain_dataset(tmp_path / "other", "street", subjects=3, walks=2, progress=False)
    assert (tmp_path / "other" / "x").read_text() == "keep"


def test_pairs_hold_two_tracks_per_subject():
    gallery, probe = domain_pairs("heldout", subjects=3, seed=0)
    assert len(gallery) == len(probe) == 3
    assert all(not np.array_equal(g[:4], p[:4]) for g, p in zip(gallery, probe))


def test_synth_command_writes_a_domain_dataset_and_refuses_studio_options(tmp_path, capsys):
    from gaitrec.cli import main

    out = tmp_path / "street"
    assert main(["synth", "--output", str(out), "--domain", "street", "--subjects", "3", "--walks", "2", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["subjects"] == 3 and summary["sequences"] == 6 and not summary["reused"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["001", "002", "003"]
    other = str(tmp_path / "other")
    for args, words in [(["--output", other, "--domain", "street", "--views", "000"], "--views do not apply to --domain"),
                        (["--output", other, "--walks", "3"], "--walks applies to --domain"),
                        (["--domain", "heldout"], "needs --output")]:
        assert main(["synth", *args]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1

"""The benchmark records: every module reads its facts from them, so they must be complete and consistent."""
import pytest

from gaitrec.benchmarks import BENCHMARKS, benchmark, find_benchmark, protocol_rules
from gaitrec.data.dataset import read_partition, resolve_partition
from gaitrec.data.pretreat import RAW_LAYOUTS, dataset_name
from gaitrec.data.summary import GRIDS
from gaitrec.evaluation.protocols import PROCEDURES, protocol_for_eval_func


def test_every_record_is_complete():
    names = [rule.name for b in BENCHMARKS for rule in b.protocols]
    assert len(names) == len(set(names)) == len(protocol_rules())  # protocol names are unique
    for bench in BENCHMARKS:
        assert bench.partition_path.is_file(), bench.name
        assert read_partition(bench.partition_path)["TRAIN_SET"], bench.name
        assert (bench.types is None) == (bench.views is None), bench.name
        assert bench.raw_layout is None or bench.raw_layout in RAW_LAYOUTS, bench.name
        for rule in bench.protocols:
            assert rule.procedure in PROCEDURES, rule.name


def test_every_protocol_is_reached_from_its_opengait_config():
    for bench in BENCHMARKS:
        for rule in bench.protocols:
            assert protocol_for_eval_func(rule.eval_func, bench.name, rule.cross_view) == rule.name


def test_names_and_spellings_lead_to_one_record_read_everywhere():
    assert find_benchmark("CASIA-B*") is find_benchmark("casia_b") is benchmark("CASIA-B")
    assert find_benchmark("MyOwnData") is None and find_benchmark(None) is None
    assert resolve_partition(None, "CASIA-B*") == benchmark("CASIA-B").partition_path
    assert dataset_name("oumvlp") == "OUMVLP"
    with pytest.raises(ValueError, match="unknown dataset 'casia-e': known CASIA-B, OUMVLP, GREW, Gait3D"):
        dataset_name("casia-e")  # a benchmark, but pretreatment knows no raw layout for it
    assert GRIDS["OUMVLP"][0] == ["00", "01"] and len(GRIDS["CASIA-B"][1]) == 11

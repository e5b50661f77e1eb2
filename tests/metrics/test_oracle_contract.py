"""Every built-in oracle satisfies the oracle contract (benchmark.testing.OracleContract): the
declared interface, one value per crystal in order, bad input answered with None or a failed
relaxation. Oracles whose weights are not at hand are skipped."""

from __future__ import annotations

import pytest

from benchmark.metrics.oracles.base import NotAnOracle, check_oracle
from benchmark.testing import OracleContract


class TestCHGNet(OracleContract):
    oracle_name = "chgnet"


class TestCDVAEPerov5(OracleContract):
    oracle_name = "cdvae-perov_5"


class TestCGCNNBandGap(OracleContract):
    oracle_name = "cgcnn-mpall20-bg"


class TestCGCNNClassifier(OracleContract):
    oracle_name = "cgcnn-oqmd-Cfm"


def test_an_object_without_the_interface_is_refused():
    class Duck:
        name, property, unit = "duck", "band_gap", "eV"

        def predict(self, crystals, progress=True):
            return [1.0] * len(crystals)

    with pytest.raises(NotAnOracle, match="not a benchmark.metrics.oracles.base.Oracle"):
        check_oracle(Duck(), "duck")

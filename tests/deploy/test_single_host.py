"""Converge test of the shipped single-host inventory (everything on one machine)."""

import pytest

from tests.deploy.converge import ConvergeSteps

pytestmark = pytest.mark.deploy
INVENTORY = "single-host"


class TestSingleHost(ConvergeSteps):
    pass

"""Converge test of the shipped example inventory (a service host and two runner hosts)."""

import pytest

from tests.deploy.converge import ConvergeSteps

pytestmark = pytest.mark.deploy
INVENTORY = "example"


class TestExample(ConvergeSteps):
    pass

import pytest

from gaitrec.registry import ConfigError, Registry


def test_register_and_build():
    reg = Registry("widget")

    @reg.register()
    class Gear:
        def __init__(self, teeth=3):
            self.teeth = teeth

    assert reg.build("Gear", teeth=5).teeth == 5
    assert "Gear" in reg and reg.names() == ["Gear"]


def test_unknown_name_lists_known_and_closest():
    reg = Registry("widget")
    reg.register("TripletLoss")(object)
    reg.register("CrossEntropyLoss")(dict)
    with pytest.raises(ConfigError) as err:
        reg.get("TripletLos")
    message = str(err.value)
    assert "unknown widget 'TripletLos'" in message
    assert "Did you mean 'TripletLoss'?" in message
    assert "CrossEntropyLoss, TripletLoss" in message


def test_double_registration_is_refused():
    reg = Registry("widget")
    reg.register("A")(int)
    with pytest.raises(KeyError):
        reg.register("A")(float)

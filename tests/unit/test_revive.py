"""A replayed result comes back as the live run returned it: the return annotation's type."""

from __future__ import annotations

import gc
import weakref

from aetheris import tools
from aetheris.tools import return_adapter, revive


def measured() -> float:
    return 3.0


def counted() -> int:
    return 3


def test_a_recorded_value_of_another_type_is_validated_into_the_annotated_one() -> None:
    # JSON keeps 3.0 as 3 on some paths: a float step must still replay a float.
    revived = revive(return_adapter(measured), 3)
    assert revived == 3.0 and type(revived) is float
    assert type(revive(return_adapter(counted), "3")) is int


def test_a_recorded_value_of_exactly_the_annotated_type_is_returned_as_it_is() -> None:
    value = 10**30  # an int validation would still give back; the very object, unvalidated
    assert revive(return_adapter(counted), value) is value
    flag = revive(return_adapter(counted), True)  # a bool is an int, not exactly one
    assert flag == 1 and type(flag) is int


def test_a_function_defined_in_a_function_is_cached_weakly() -> None:
    def local() -> int:
        return 1

    assert return_adapter(local) is return_adapter(counted)  # one adapter per scalar type
    assert local in tools._adapters and counted in tools._named_adapters
    alive = weakref.ref(local)
    del local
    gc.collect()
    assert alive() is None  # no cache kept it

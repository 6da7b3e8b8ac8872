"""Every model class documents every constructor parameter (numpydoc, with its default), and fit
points DataFrame users to aerec.data.from_dataframe."""
import ast
import inspect
import re

import pandas as pd
import pytest

import aerec
from aerec.models import CDAE, EASE, AutoRec, MultDAE, MultVAE, Popularity

CLASSES = [aerec.Autoencoder, AutoRec, MultDAE, MultVAE, CDAE, EASE, Popularity]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_constructor_parameter_is_documented_with_its_default(cls):
    doc = inspect.getdoc(cls)
    assert "Parameters\n----------" in doc
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        m = re.search(rf"^{name} : (.+)$", doc, re.M)
        assert m, f"{cls.__name__}: {name} is not documented"
        stated = re.search(r"default (.+?)(?: \(|$)", m.group(1))
        assert stated, f"{cls.__name__}.{name}: no default stated: {m.group(1)!r}"
        assert ast.literal_eval(stated.group(1)) == p.default, \
            f"{cls.__name__}.{name}: the docstring says default {stated.group(1)}, the code {p.default!r}"


@pytest.mark.parametrize("cls", [MultDAE, MultVAE, CDAE, EASE, Popularity, AutoRec], ids=lambda c: c.__name__)
def test_fit_points_to_from_dataframe(cls):
    assert "from_dataframe" in (inspect.getdoc(cls) + (inspect.getdoc(cls.fit) or ""))
    df = pd.DataFrame({"user": [1, 2], "item": [3, 4]})
    with pytest.raises(TypeError, match=r"aerec\.data\.from_dataframe"):
        cls().fit(df)


def test_save_docstrings_have_no_leaked_comments():
    for cls in CLASSES:
        doc = inspect.getdoc(cls.save) or ""
        assert doc and "#" not in doc, cls.__name__

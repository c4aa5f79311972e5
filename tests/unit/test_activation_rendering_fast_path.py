"""Rendering without `Template.render`'s per-call work gives exactly what `Template.render` gives."""

from __future__ import annotations

import pytest
from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

from activation import rendering

TEMPLATES = {
    "t.subject.j2": "{% set greeting = 'Hi' %}{{ greeting }} {{ first_name or 'there' }}{% for i in range(2) %}!{% endfor %}",
    "t.text.j2": "{{ greeting | default('none') }} {{ product_name }} {{ cta_url }} {{ answer }}",
    "t.html.j2": "<p>{{ first_name }}</p>{% autoescape false %}{{ first_name }}{% endautoescape %}{{ first_name }}",
    "t.chat.j2": "{% set ns = namespace(n=0) %}{% for c in 'abc' %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }} {{ due_at }}",
    "broken.chat.j2": "{{ no_such_field }}",
}


def _env(**options) -> Environment:
    env = Environment(
        loader=DictLoader(TEMPLATES),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        **options,
    )
    env.globals["answer"] = 42
    return env


@pytest.mark.parametrize("options", [{}, {"auto_reload": True}])
def test_fast_path_renders_what_jinja_renders(options):
    env, reference = _env(**options), _env()
    for first_name in ["Ana", "<b>Zoë & Co</b>", "", None, 1, True]:
        row = {"first_name": first_name, "product_name": "<A&B>", "product_id": "atlas", "due_at": None}
        renderer = rendering._Renderer(env, row)
        context = rendering._context(row)
        for name in ("t.subject.j2", "t.text.j2", "t.html.j2", "t.chat.j2", "t.html.j2"):
            assert renderer(name) == reference.get_template(name).render(**context).strip()


def test_a_missing_field_is_still_a_render_error():
    renderer = rendering._Renderer(_env(), {"first_name": "Ana"})
    with pytest.raises(rendering.RenderError, match="no_such_field"):
        renderer("broken.chat.j2")


def test_a_new_environment_or_loader_is_not_served_from_the_cache():
    env = _env()
    assert rendering._Renderer(env, {"first_name": "Ana"})("t.html.j2").startswith("<p>Ana</p>")
    env.loader = DictLoader({**TEMPLATES, "t.html.j2": "<i>{{ first_name }}</i>"})
    env.cache.clear()
    assert rendering._Renderer(env, {"first_name": "Ana"})("t.html.j2") == "<i>Ana</i>"

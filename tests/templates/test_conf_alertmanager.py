"""alertmanager.yml, checked by amtool for every stack, with and without a webhook."""

from __future__ import annotations

import pytest
import yaml

AM = "alertmanager/alertmanager.yml"


@pytest.mark.parametrize("webhook", [None, "https://hooks.example.com/recon?token=a'b\"c"],
                         ids=["log-only", "webhook"])
def test_amtool_check_config_local(webhook, render_local, find_tool, run_cmd):
    r = render_local(overrides={"alertmanager": {"webhook_url": webhook}})
    out = run_cmd([find_tool("amtool"), "check-config", str(r.path(AM))])
    assert "SUCCESS" in out.stdout
    receivers = {x["name"]: x for x in yaml.safe_load(r.text(AM))["receivers"]}
    if webhook:
        assert receivers["default"]["webhook_configs"] == [{"url": webhook, "send_resolved": True}]
    else:
        assert "webhook_configs" not in receivers["default"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_amtool_check_config_stacks(stack, render_stack, find_tool, run_cmd):
    r = render_stack(stack)
    run_cmd([find_tool("amtool"), "check-config", str(r.path(AM))])


def test_inhibit_rules_name_alerts_that_exist(render_local):
    """An inhibit rule naming a misspelled alert silently does nothing; catch it here."""
    r = render_local()
    alerts = {rule["alert"] for g in yaml.safe_load(r.text("prometheus/rules/recon.rules.yml"))["groups"]
              for rule in g["rules"] if "alert" in rule}
    doc = yaml.safe_load(r.text(AM))
    named: set[str] = set()
    for rule in doc["inhibit_rules"]:
        for m in rule.get("source_matchers", []) + rule.get("target_matchers", []):
            if m.startswith("alertname="):
                value = m.split("=", 1)[1].lstrip("~").strip('"')
                named |= set(value.split("|"))
    assert named and named <= alerts

"""Triage customer-support change tickets in ServiceNow: close the resolved and duplicated ones."""

from __future__ import annotations

import logging
import os

import requests
from slack_sdk import WebClient

INSTANCE = os.environ.get("SN_INSTANCE", "bank")
BASE_URL = f"https://{INSTANCE}.service-now.com"
CHANGES = BASE_URL + "/api/now/table/change_request"
INCIDENTS = f"{BASE_URL}/api/now/table/incident"
CHANNEL = "#cs-change-triage"

log = logging.getLogger("triage")


class ServiceNow:
    """The three Table API calls this agent is allowed to make."""

    def __init__(self, session: requests.Session | None = None) -> None:
        self.http = session or requests.Session()
        self.http.auth = (os.environ["SN_USER"], os.environ["SN_PASSWORD"])
        self.http.headers["Accept"] = "application/json"

    def open_changes(self, queue: str) -> list[dict]:
        params = {"sysparm_query": f"assignment_group.name={queue}^state!=3", "sysparm_limit": "100"}
        response = self.http.get(CHANGES, params=params, timeout=30)
        response.raise_for_status()
        return response.json()["result"]

    def linked_incident(self, sys_id: str) -> dict:
        response = self.http.get(f"{INCIDENTS}/{sys_id}", timeout=30)
        response.raise_for_status()
        return response.json()["result"]

    def close(self, sys_id: str, note: str) -> None:
        body = {"state": "3", "close_code": "successful", "close_notes": note}
        response = self.http.patch(f"{CHANGES}/{sys_id}", json=body, timeout=30)
        response.raise_for_status()


def is_resolved(change: dict, incident: dict) -> bool:
    return incident.get("state") in ("6", "7") and change.get("type") == "standard"


def run(queue: str = "CS Changes") -> int:
    snow = ServiceNow()
    slack = WebClient(token=os.environ["SLACK_BOT_TOKEN"])
    closed = []
    for change in snow.open_changes(queue):
        incident_id = (change.get("parent") or {}).get("value")
        if not incident_id:
            continue
        if is_resolved(change, snow.linked_incident(incident_id)):
            snow.close(change["sys_id"], note=f"Closed by triage-cs-01: incident {incident_id} resolved")
            closed.append(change["number"])
    log.info("closed %d change(s)", len(closed))
    if closed:
        slack.chat_postMessage(channel=CHANNEL, text=f"Closed {len(closed)} change(s): {', '.join(closed)}")
    return len(closed)


if __name__ == "__main__":
    run()

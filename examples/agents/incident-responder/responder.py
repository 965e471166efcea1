"""First-line incident responder: acknowledge the page, contain the Falcon host, clear the user's Okta sessions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import httpx
import requests

PAGERDUTY = "https://api.pagerduty.com"
FALCON = "https://api.crowdstrike.com"
OKTA_ORG = os.environ.get("OKTA_ORG", "bank")
SLACK_POST = "https://slack.com/api/chat.postMessage"
RESPONDER_EMAIL = "ir-bot@bank.example"

log = logging.getLogger("incident-responder")


@dataclass
class Incident:
    id: str
    host: str
    user: str


class PagerDuty:
    def __init__(self) -> None:
        self.http = httpx.Client(
            base_url=PAGERDUTY,
            headers={"Authorization": f"Token token={os.environ['PD_API_KEY']}", "From": RESPONDER_EMAIL},
            timeout=20,
        )

    def triggered(self) -> list[dict]:
        response = self.http.get("/incidents", params={"statuses[]": "triggered", "urgencies[]": "high"})
        response.raise_for_status()
        return response.json()["incidents"]

    def acknowledge(self, incident_id: str) -> None:
        body = {"incident": {"type": "incident_reference", "status": "acknowledged"}}
        self.http.put(f"/incidents/{incident_id}", json=body).raise_for_status()

    def note(self, incident_id: str, text: str) -> None:
        self.http.post(f"/incidents/{incident_id}/notes", json={"note": {"content": text}}).raise_for_status()


class Falcon:
    def __init__(self) -> None:
        token = httpx.post(
            f"{FALCON}/oauth2/token",
            data={"client_id": os.environ["FALCON_CLIENT_ID"], "client_secret": os.environ["FALCON_SECRET"]},
        ).json()["access_token"]
        self.http = httpx.Client(base_url=FALCON, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def detections_for(self, hostname: str) -> list[str]:
        response = self.http.get("/detects/queries/detects/v1", params={"filter": f"device.hostname:'{hostname}'"})
        return response.json()["resources"]

    def device_id(self, hostname: str) -> str:
        response = self.http.get("/devices/queries/devices/v1", params={"filter": f"hostname:'{hostname}'"})
        return response.json()["resources"][0]

    def contain(self, device_id: str) -> None:
        self.http.post(
            "/devices/entities/devices-actions/v2",
            params={"action_name": "contain"},
            json={"ids": [device_id]},
        ).raise_for_status()


class Okta:
    def __init__(self) -> None:
        self.base = f"https://{OKTA_ORG}.okta.com/api/v1"
        self.http = httpx.Client(headers={"Authorization": f"SSWS {os.environ['OKTA_API_TOKEN']}"}, timeout=20)

    def user(self, login: str) -> dict:
        return self.http.get(f"{self.base}/users/{login}").json()

    def clear_sessions(self, user_id: str) -> None:
        self.http.delete(f"{self.base}/users/{user_id}/sessions").raise_for_status()


def parse(incident: dict) -> Incident:
    details = incident.get("body", {}).get("details", {})
    return Incident(incident["id"], details.get("hostname", ""), details.get("user", ""))


def respond() -> None:
    pd, falcon, okta = PagerDuty(), Falcon(), Okta()
    for raw in pd.triggered():
        incident = parse(raw)
        pd.acknowledge(incident.id)
        if falcon.detections_for(incident.host):
            falcon.contain(falcon.device_id(incident.host))
        user = okta.user(incident.user)
        okta.clear_sessions(user["id"])
        pd.note(incident.id, f"Contained {incident.host}; cleared Okta sessions of {incident.user}")
        requests.post(
            SLACK_POST,
            headers={"Authorization": f"Bearer {os.environ['SLACK_BOT_TOKEN']}"},
            json={"channel": "#secops-alerts", "text": f"Auto-contained {incident.host} for {incident.id}"},
            timeout=10,
        )
        log.info("handled %s", incident.id)


if __name__ == "__main__":
    respond()

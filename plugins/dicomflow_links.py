"""Airflow plugin: a link from Airflow's navigation to the platform's pages."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dicomflow.config import load_settings

_web = load_settings(create_secrets=False).web.base_url


class DicomflowLinks(AirflowPlugin):
    """Puts "dicomflow" (series, uploads) into the Airflow UI's navigation."""

    name = "dicomflow_links"
    external_views = [
        {
            "name": "dicomflow",
            "href": _web,
            "destination": "nav",
            "url_route": "dicomflow",
        }
    ]

"""Glance v2 reads: the version list, images listed (filters ``name``, ``id``) and shown.

Contract: :data:`SERVICE` declares the routes under ``/image``; everything but the version list
needs a token; images come from :class:`.model.CloudModel` (``images``, ``find_image``).
Glance answers its errors as plain text.
"""

from __future__ import annotations

from .model import PROJECT_ID
from .routing import Reply, Request, Route, Service, filtered


def image_view(i: dict) -> dict:
    return {"id": i["id"], "name": i["name"], "status": "active", "visibility": "public",
            "container_format": "bare", "disk_format": "qcow2", "min_disk": 0, "min_ram": 0,
            "size": 1073741824, "virtual_size": None, "checksum": "0" * 32,
            "os_hash_algo": "sha512", "os_hash_value": "0" * 128, "protected": False,
            "os_hidden": False, "owner": PROJECT_ID, "tags": [],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "self": f"/v2/images/{i['id']}", "file": f"/v2/images/{i['id']}/file",
            "schema": "/v2/schemas/image"}


def versions(req: Request):
    url = req.emu.url
    return 300, {"versions": [
        {"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": f"{url}/image/v2/"}]},
        {"id": "v2.0", "status": "SUPPORTED", "links": [{"rel": "self", "href": f"{url}/image/v2/"}]}]}, None


def list_images(req: Request):
    return 200, {"images": [image_view(i) for i in filtered(req.emu.model.images, req.query)],
                 "first": "/v2/images", "schema": "/v2/schemas/images"}, None


def show_image(req: Request, image_id: str):
    i = req.emu.model.find_image(image_id)
    if i is None:
        raise Reply(404, f"404 Not Found\n\nNo image found with ID {image_id}\n\n")
    return 200, image_view(i), None


def not_found(req: Request, rest: str):
    req.authenticate()
    raise Reply(404, "404 Not Found\n\nThe resource could not be found.\n\n")


SERVICE = Service("image", "/image", [
    Route("GET", "/image", versions),
    Route("GET", "/image/v2/images", list_images, Request.authenticate),
    Route("GET", "/image/v2/images/{image_id}", show_image, Request.authenticate),
], not_found)

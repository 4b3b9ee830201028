"""Pull references of the platform's images, by locked digest.

    {{ lookup('platform_image', 'nginx') }}    ->  nginx@sha256:...
                                                   (or <mirror>/library/nginx@sha256:...)
    {{ lookup('platform_image', *platform_deploy_images, check=true) }}
        -> '' when every named image has a locked digest, else one line naming the first
           image without one and the command to run (the first play asserts on it)

The one place where roles get an image: names and tags from `platform_images`
(ansible/versions.yml), digests from the lock file `platform_images_lock`, and the site
registry `platform_registry_mirror` when set. The rules are those of ansible/scripts/images.py
(`images.py ref`), which this plugin loads, so the CLI and the deploy cannot disagree.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ansible.errors import AnsibleLookupError

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: platform_image
short_description: pull reference of a platform image by its locked digest
description:
  - Returns C(<repository>@sha256:<digest>) for each named image of C(platform_images), with
    the digest from the lock file C(platform_images_lock), prefixed by
    C(platform_registry_mirror) when set.
options:
  _terms:
    description: image names (keys of platform_images)
    required: true
  check:
    description: return one message (empty when all are locked) instead of failing
    type: bool
    default: false
"""

RETURN = r"""
_raw:
  description: pull references (or, with check=true, one message)
  type: list
  elements: str
"""

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "images.py"
_spec = importlib.util.spec_from_file_location("platform_images_cli", _SCRIPT)
images = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
if not hasattr(images, "Image"):
    _spec.loader.exec_module(images)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        for required in ("platform_images", "platform_images_lock"):
            if required not in variables:
                raise AnsibleLookupError(f"platform_image: {required} is not defined")
        declared = self._templar.template(variables["platform_images"])
        lock = Path(self._templar.template(variables["platform_images_lock"]))
        mirror = self._templar.template(variables.get("platform_registry_mirror") or "") or None
        try:
            known = {name: images.Image.parse(name, str(ref)) for name, ref in declared.items()}
            entries = images.read_lock(lock)
            if self.get_option("check"):
                missing = [
                    str(t) for t in terms if images.locked_digest(known[str(t)], entries) is None
                ]
                return [images.unlocked_message(missing, lock) if missing else ""]
            return [images.resolve_ref(str(t), known, entries, lock, mirror) for t in terms]
        except (images.ImageError, KeyError) as exc:
            raise AnsibleLookupError(str(exc)) from exc

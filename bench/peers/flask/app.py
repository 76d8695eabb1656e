"""Flask benchmark peer of validator-webhook.

A Kubernetes validating admission webhook (admission.k8s.io/v1) that denies
workloads whose container images do not have a *name* (last path component of
the image repository) starting with an allowed prefix (default "msalinasc_").

Run with Flask's own (Werkzeug) server:
    python app.py --listen 127.0.0.1:8443 --cert tls.crt --key tls.key
or with gunicorn (see gunicorn.conf.py):
    gunicorn -c gunicorn.conf.py --certfile tls.crt --keyfile tls.key \
        -b 127.0.0.1:8443 app:app
The prefix comes from --allowed-prefix or the ALLOWED_PREFIX environment
variable (the latter is how to set it under gunicorn).
"""

import argparse
import json
import logging
import os
import re

from flask import Flask, jsonify, request

app = Flask(__name__)
app.config["ALLOWED_PREFIX"] = os.environ.get("ALLOWED_PREFIX", "msalinasc_")

# ---------------------------------------------------------------------------
# Image reference parsing: a port of github.com/distribution/reference
# (ParseNormalizedNamed), the parser container runtimes use.
# ---------------------------------------------------------------------------
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|\[(?:[a-fA-F0-9:]+)\])"
_DOMAIN_AND_PORT = _HOST + r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEP + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

# re.ASCII: Go's RE2 \w is ASCII-only.
_REFERENCE_RE = re.compile(
    r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII
)
_ANCHORED_NAME_RE = re.compile(
    r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII
)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
# go-digest: algorithms available by default and their hex lengths.
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")

_REPOSITORY_NAME_MAX = 255


class InvalidReference(ValueError):
    pass


def _split_docker_domain(name):
    maybe_domain, slash, maybe_remote = name.partition("/")
    if not slash:
        # "nginx", "nginx:1.25" -> docker.io/library/nginx[:tag]
        return "docker.io", "library/" + name
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == "index.docker.io":
        domain, remote = "docker.io", maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, remote = maybe_domain, maybe_remote  # host, host:port, IP
    elif maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = "docker.io", name
    if domain == "docker.io" and "/" not in remote:
        remote = "library/" + remote
    return domain, remote


def _validate_digest(dgst):
    algorithm, _, encoded = dgst.partition(":")
    want = _DIGEST_HEX_LEN.get(algorithm)
    if want is None:
        raise InvalidReference("unsupported digest algorithm")
    if len(encoded) != want or not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidReference("invalid checksum digest format")


def parse_repository_path(image):
    """Return the repository path of an image reference, normalised the way
    docker/containerd do (``nginx:1.25`` -> ``library/nginx``,
    ``registry:5000/team/app@sha256:...`` -> ``team/app``).

    Raises InvalidReference for references a container runtime would reject.
    """
    if not image:
        raise InvalidReference("repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(image):
        raise InvalidReference(
            "invalid repository name (%s), cannot specify 64-byte hexadecimal strings" % image
        )
    domain, remainder = _split_docker_domain(image)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(
            "invalid reference format: repository name (%s) must be lowercase" % remote
        )
    full = domain + "/" + remainder
    m = _REFERENCE_RE.fullmatch(full)
    if m is None:
        if _REFERENCE_RE.fullmatch(full.lower()) is not None:
            raise InvalidReference("invalid reference format: repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, _tag, dgst = m.group(1), m.group(2), m.group(3)
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    path = nm.group(2) if nm else name
    if len(path) > _REPOSITORY_NAME_MAX:
        raise InvalidReference(
            "repository name must not be more than %d characters" % _REPOSITORY_NAME_MAX
        )
    if dgst:
        _validate_digest(dgst)
    return path


def image_name(image):
    """The image *name*: last path component of the normalised repository."""
    return parse_repository_path(image).rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------
# Admission logic
# ---------------------------------------------------------------------------
# (group, kind) -> path of the PodSpec inside the object
POD_SPEC_PATHS = {
    ("", "Pod"): ("spec",),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")


def check_image(image, prefix):
    """Return None if the image is allowed, otherwise the reason."""
    if not isinstance(image, str) or not image:
        return "image is empty"
    try:
        name = image_name(image)
    except InvalidReference as e:
        return "cannot parse image reference: %s" % e
    if not name.startswith(prefix):
        return "image name %s does not start with %s" % (json.dumps(name), json.dumps(prefix))
    return None


def find_violations(obj, spec_path, prefix):
    spec = obj
    for key in spec_path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        return []
    at = ".".join(spec_path)
    problems = []
    for field in CONTAINER_FIELDS:
        for i, c in enumerate(spec.get(field) or []):
            if not isinstance(c, dict):
                continue
            why = check_image(c.get("image"), prefix)
            if why:
                problems.append(
                    "%s.%s[%d] (container %s, image %s): %s"
                    % (at, field, i, json.dumps(c.get("name", "")), json.dumps(c.get("image", "")), why)
                )
    return problems


def review(uid, allowed, message=None):
    response = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    return jsonify(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    )


@app.route("/validate", methods=["POST"])
def validate():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        return jsonify({"error": "expected an admission.k8s.io/v1 AdmissionReview"}), 400
    req = body["request"]
    uid = req.get("uid", "")

    if req.get("operation") in ("DELETE", "CONNECT"):
        return review(uid, True)

    kind = req.get("kind") or {}
    spec_path = POD_SPEC_PATHS.get((kind.get("group", ""), kind.get("kind", "")))
    obj = req.get("object")
    if spec_path is None or not isinstance(obj, dict):
        return review(uid, True)

    problems = find_violations(obj, spec_path, app.config["ALLOWED_PREFIX"])
    if problems:
        return review(uid, False, "Invalid image name: " + "; ".join(problems))
    return review(uid, True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8443", help="host:port")
    parser.add_argument("--cert", required=True, help="TLS certificate (PEM)")
    parser.add_argument("--key", required=True, help="TLS private key (PEM)")
    parser.add_argument("--allowed-prefix", default=app.config["ALLOWED_PREFIX"])
    args = parser.parse_args()
    app.config["ALLOWED_PREFIX"] = args.allowed_prefix
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    # No per-request access log (gunicorn's access log is off by default too).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Werkzeug development server; threaded=True is the default for app.run.
    # Threaded mode makes Werkzeug speak HTTP/1.1, so keep-alive works.
    app.run(host=host, port=int(port), ssl_context=(args.cert, args.key), threaded=True)


if __name__ == "__main__":
    main()

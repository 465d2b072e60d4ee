"""The customer API's start-up checks."""

from __future__ import annotations

import pytest

from touchstream.config.settings import Settings
from touchstream.errors import ConfigError
from touchstream.serving.api import CustomerApi


def test_unreadable_tls_files_stop_the_worker_naming_the_setting(tmp_path):
    settings = Settings(
        api_ssl_certfile=str(tmp_path / "missing.pem"), api_ssl_keyfile=str(tmp_path / "k.pem")
    )

    with pytest.raises(ConfigError) as error:
        CustomerApi(settings, redis=None, normaliser=None)  # type: ignore[arg-type]

    assert error.value.key == "TOUCHSTREAM_API_SSL_CERTFILE"
    assert "cannot load the TLS files" in error.value.problem

"""Settings (environment) and rules (TOML), validated once at start-up."""

from touchstream.config.rules import Rules, load_rules, parse_rules
from touchstream.config.settings import Settings, load_all, load_settings

__all__ = ["Rules", "Settings", "load_all", "load_rules", "load_settings", "parse_rules"]

"""Language codes and translation directions ("en-es"), validated against a known table."""

from __future__ import annotations

from routelmt.errors import ConfigError

LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fr": "French", "gu": "Gujarati",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "km": "Khmer",
    "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "ml": "Malayalam", "mr": "Marathi",
    "ms": "Malay", "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "ps": "Pashto",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian",
    "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu",
    "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "xh": "Xhosa", "zh": "Chinese", "zu": "Zulu",
}  # fmt: skip

# Targets whose text has no spaces between words: metrics must tokenise them differently.
CJK_LANGUAGES = frozenset({"zh", "ja", "ko"})


def language_name(code: str) -> str:
    """English name of a language code; unknown codes are a clear error."""
    base = code.split("_")[0].split("-")[0].lower()
    try:
        return LANGUAGE_NAMES[base]
    except KeyError:
        raise ConfigError(
            f"unknown language code '{code}'; expected an ISO 639-1 code such as "
            f"{', '.join(sorted(LANGUAGE_NAMES)[:8])}, ..."
        ) from None


def parse_direction(direction: str) -> tuple[str, str]:
    """Split "en-es" (or "en_es") into validated (source, target) codes."""
    sep = "-" if "-" in direction else "_"
    parts = direction.split(sep)
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"invalid direction '{direction}'; expected SRC-TGT, e.g. en-es")
    src, tgt = (part.lower() for part in parts)
    language_name(src)
    language_name(tgt)
    return src, tgt


def target_language(direction: str) -> str:
    return parse_direction(direction)[1]

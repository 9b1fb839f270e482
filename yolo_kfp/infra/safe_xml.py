"""XML that came from a bucket, parsed without a DTD.

A document that declares a document type (``<!DOCTYPE ...>``) is refused before anything is built from it: no
entity can then be declared, so none expands (a "billion laughs" bomb) and none is fetched (an external entity
reading a file or a URL into the labels). Labelled exports (Pascal VOC, CVAT) never declare one. A first pass of
Python's expat checks that, and tells malformed XML by line and column; ElementTree then parses what passed.
"""

import xml.etree.ElementTree as ET
from xml.parsers import expat


class RefusedXml(ValueError):
    """Malformed XML, or a document that declares a document type; says where."""


def parse_xml(data: bytes) -> ET.Element:
    """The root element of the document ``data``; ``RefusedXml`` for malformed XML or a DOCTYPE."""
    checker = expat.ParserCreate()

    def refuse_doctype(*_) -> None:
        raise RefusedXml(f"declares a document type (<!DOCTYPE>) at line {checker.CurrentLineNumber}, which a "
                         "labelled export has no use for and which could declare entities: refused")

    checker.StartDoctypeDeclHandler = refuse_doctype
    try:
        checker.Parse(data, True)
    except expat.ExpatError as error:
        raise RefusedXml(f"malformed XML at line {error.lineno}, column {error.offset + 1}: "
                         f"{expat.ErrorString(error.code)}") from None
    return ET.fromstring(data)


def parse_xml_file(path: str) -> ET.Element:
    with open(path, "rb") as f:
        return parse_xml(f.read())

"""Pure mapping between a Didomi consent state and Dataverse contact columns, both ways.

No I/O and nothing beyond the standard library: ``Property`` / ``PropertyMapping`` hold the
``config.properties`` of an integration; ``project`` turns a ``ConsentSnapshot`` into column values
and ``coerce`` encodes them for the Web API; ``reverse_project`` turns changed columns back into a
consent event. The path grammar, transforms and type rules are documented in docs/mapping.md.
"""

from consentbridge.mapping.coerce import AttributeType, ColumnSpec, coerce, coerce_row
from consentbridge.mapping.errors import (
    ConsentStateError,
    MappingColumnError,
    MappingConfigError,
    MappingError,
    MappingPathError,
    MappingTransformError,
    MappingValueError,
    Problem,
)
from consentbridge.mapping.grammar import (
    ParsedPath,
    PathKind,
    PathTarget,
    ValueKind,
    parse_path,
)
from consentbridge.mapping.lint import lint_path, lint_properties, lint_property
from consentbridge.mapping.project import lookup, project, read_path, resolve
from consentbridge.mapping.properties import (
    Property,
    PropertyMapping,
    RawTransform,
    check_column_name,
)
from consentbridge.mapping.reverse import (
    ReverseResult,
    one_way_columns,
    one_way_reason,
    reverse_project,
)
from consentbridge.mapping.snapshot import ConsentSnapshot, PreferenceState, PurposeState
from consentbridge.mapping.transforms import (
    NOT,
    Inversion,
    Negation,
    Target,
    Transform,
    ValueMap,
    apply_transform,
    check_transform,
    inverse,
    parse_transform,
)

__all__ = [
    "NOT",
    "AttributeType",
    "ColumnSpec",
    "ConsentSnapshot",
    "ConsentStateError",
    "Inversion",
    "MappingColumnError",
    "MappingConfigError",
    "MappingError",
    "MappingPathError",
    "MappingTransformError",
    "MappingValueError",
    "Negation",
    "ParsedPath",
    "PathKind",
    "PathTarget",
    "PreferenceState",
    "Problem",
    "Property",
    "PropertyMapping",
    "PurposeState",
    "RawTransform",
    "ReverseResult",
    "Target",
    "Transform",
    "ValueKind",
    "ValueMap",
    "apply_transform",
    "check_column_name",
    "check_transform",
    "coerce",
    "coerce_row",
    "inverse",
    "lint_path",
    "lint_properties",
    "lint_property",
    "lookup",
    "one_way_columns",
    "one_way_reason",
    "parse_path",
    "parse_transform",
    "project",
    "read_path",
    "resolve",
    "reverse_project",
]

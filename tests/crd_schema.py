"""An object held to a CustomResourceDefinition as the API server would hold it: its OpenAPI schema (types,
required fields, enums), no field the schema does not declare (the API server would drop it silently), and
the CEL rules (``x-kubernetes-validations``) that apply when an object is created, evaluated with cel-python."""

import celpy
import jsonschema


def served_schema(definition: dict, obj: dict) -> dict:
    """The openAPIV3Schema of the CRD version that obj's apiVersion names; fails if that version is not served."""
    group, version = obj["apiVersion"].split("/")
    assert (group, obj["kind"]) == (definition["spec"]["group"], definition["spec"]["names"]["kind"])
    served = {v["name"]: v for v in definition["spec"]["versions"] if v.get("served")}
    assert version in served, f"{obj['kind']} {version} is not served (the CRD serves {sorted(served)})"
    return served[version]["schema"]["openAPIV3Schema"]


def undeclared_fields(value, schema: dict, path: str = "") -> list[str]:
    """Fields the schema does not declare, in objects and lists alike: the API server would drop them
    silently (pruning), so a misspelled field would be lost without an error."""
    if isinstance(value, list):
        items = schema.get("items", {})
        return [f for i, item in enumerate(value) for f in undeclared_fields(item, items, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    if "properties" in schema:
        found = []
        for key, item in value.items():
            if key in schema["properties"]:
                found += undeclared_fields(item, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
                found.append(f"{path}.{key}")
        return found
    if isinstance(schema.get("additionalProperties"), dict):
        values = schema["additionalProperties"]
        return [f for key, item in value.items() for f in undeclared_fields(item, values, f"{path}.{key}")]
    return []


def creation_rules(value, schema: dict, path: str = "") -> list[tuple[str, str, object]]:
    """(where, rule, the value it judges as ``self``) for every CEL rule that applies to ``value`` on
    creation: transition rules (``oldSelf``) judge updates only."""
    found = [(path or ".", rule["rule"], value) for rule in schema.get("x-kubernetes-validations", [])
             if "oldSelf" not in rule["rule"]]
    if isinstance(value, list):
        items = schema.get("items", {})
        found += [r for i, item in enumerate(value) for r in creation_rules(item, items, f"{path}[{i}]")]
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key) or (
                schema["additionalProperties"] if isinstance(schema.get("additionalProperties"), dict) else None)
            if sub:
                found += creation_rules(item, sub, f"{path}.{key}")
    return found


def cel_failures(obj: dict, schema: dict) -> list[str]:
    """The creation rules ``obj`` breaks, each as where, rule."""
    environment = celpy.Environment()
    failed = []
    for where, rule, value in creation_rules(obj, schema):
        program = environment.program(environment.compile(rule))
        verdict = program.evaluate({"self": celpy.json_to_cel(value)})
        if not (isinstance(verdict, celpy.celtypes.BoolType) and bool(verdict)):  # false, or an error
            failed.append(f"{where}: {rule}")
    return failed


def problems(obj: dict, definition: dict) -> list[str]:
    """Everything the API server would refuse or drop in ``obj`` on creation."""
    schema = served_schema(definition, obj)
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    return (errors + [f"{path[1:]}: not declared by the CRD" for path in undeclared_fields(obj, schema)]
            + cel_failures(obj, schema))

"""The rule of ``class_map``, which a type cannot say: it maps the names of extra_data's exports onto classes the
run trains, so a name mapped elsewhere is refused before any work rather than dropped after the download."""

from yolo_kfp.infra.urls import shown
from yolo_kfp.params.run_parameters import BY_NAME


def class_map_problems(class_map: dict, p: dict) -> list[str]:
    """Each key an export's class name (some text), each value one of ``classes``."""
    classes = p.get("classes", BY_NAME["classes"].default)
    problems = []
    for name, target in class_map.items():
        if not isinstance(name, str) or not name.strip():
            problems.append(f"class_map maps {shown(name)}: a key must be the name of a class in your export")
        elif not isinstance(target, str) or target not in classes:
            problems.append(f"class_map maps {shown(name)} to {shown(target)}, which is not one of the classes the "
                            f"run trains ({', '.join(map(str, classes))}): map it to one of them or add it to classes")
    return problems

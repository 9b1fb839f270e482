"""The rules between a search's counts and the rest of the run: trials and epochs of a search need a space, and a
trial trains at most as long as the final training."""

from yolo_kfp.params.run_parameters import BY_NAME


def search_trials_problems(trials, p) -> list[str]:
    if trials and not p.get("search_space", BY_NAME["search_space"].default):
        return [f"search_trials is {trials}, but search_space is empty: give a search_space, or leave search_trials "
                "at 0"]
    return []


def search_epochs_problems(epochs, p) -> list[str]:
    """Trials are shortened trainings: of the run's own epochs, or fewer."""
    space = p.get("search_space", BY_NAME["search_space"].default)
    if not epochs:
        return []
    if not space:
        return [f"search_epochs is {epochs}, but search_space is empty: give a search_space, or leave search_epochs "
                "at 0"]
    if isinstance(space, dict) and "epochs" in space:
        return [f"search_epochs {epochs} has no effect when search_space searches epochs: leave one of them out"]
    run_epochs = p.get("epochs", BY_NAME["epochs"].default)
    if isinstance(run_epochs, int) and epochs > run_epochs:
        return [f"search_epochs {epochs} is more than the run's epochs {run_epochs}: a trial trains at most as long "
                f"as the final training; give at most {run_epochs}, or 0 (as many)"]
    return []

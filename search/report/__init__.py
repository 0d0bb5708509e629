"""Compare the trials of a search, read back from MLflow: tables, figures, parameter importance.

    client = open_store(uri)
    search, notes = load_search(client, tracking_uri=uri, selector="vimh-loss-search")
    report = write_report(search, Path("runs/vimh-loss-search/report"))
    log_report(client, report)            # the files become artifacts of the parent run
"""

from search.report._importance import parameter_importance
from search.report._load import (
    Objective,
    ReportError,
    SearchRecord,
    TrialRecord,
    WEIGHTS_PREFIX,
    find_search,
    load_search,
    open_store,
    run_directory_name,
)
from search.report._plots import front_label, pareto_set
from search.report._tables import (
    WEIGHTING_STRATEGY,
    Table,
    loss_type_table,
    pareto_table,
    ranked,
    trial_table,
    weighting_table,
)
from search.report._write import (
    ARTIFACT_PATH,
    FIGURES,
    MARKER,
    PARETO_FIGURE,
    PARETO_TABLE,
    WEIGHTING_FIGURE,
    WEIGHTING_TABLE,
    Report,
    check_out_folder,
    log_report,
    write_report,
)

__all__ = [
    "ARTIFACT_PATH",
    "FIGURES",
    "PARETO_FIGURE",
    "PARETO_TABLE",
    "WEIGHTING_FIGURE",
    "WEIGHTING_STRATEGY",
    "WEIGHTING_TABLE",
    "WEIGHTS_PREFIX",
    "Objective",
    "Report",
    "MARKER",
    "ReportError",
    "SearchRecord",
    "Table",
    "TrialRecord",
    "check_out_folder",
    "find_search",
    "front_label",
    "load_search",
    "log_report",
    "loss_type_table",
    "open_store",
    "parameter_importance",
    "pareto_set",
    "pareto_table",
    "ranked",
    "run_directory_name",
    "trial_table",
    "weighting_table",
    "write_report",
]

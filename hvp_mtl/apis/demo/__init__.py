"""The demo (``demo/run_demo.py``): its stages, seeds, probes, results file, tables and charts."""
from .charts import plot_table
from .plans import build_results, run_tables, table_specs
from .recipes import ABLATION_CONFIGS, ARCHS, CONFIGS, SIZES, ablation_weights, arch_options
from .report import (
    closing_note,
    render_results,
    render_table,
    unsourced_quotes,
    update_generated_blocks,
)
from .runner import ROOT, Demo
from .stats import VERDICT_RULE, compare, compare_gains, summarise

__all__ = [
    'Demo', 'SIZES', 'ARCHS', 'CONFIGS', 'ROOT', 'ABLATION_CONFIGS', 'ablation_weights',
    'arch_options', 'table_specs',
    'run_tables',
    'build_results', 'render_results', 'render_table', 'closing_note', 'update_generated_blocks',
    'unsourced_quotes',
    'plot_table', 'summarise', 'compare', 'compare_gains', 'VERDICT_RULE'
]

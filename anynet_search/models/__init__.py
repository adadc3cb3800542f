"""Networks from configs: the config and its design rules, block and stem types, the module builder, the
analytic complexity, RegNet generation and fitting, the published RegNet zoo and config descriptions."""

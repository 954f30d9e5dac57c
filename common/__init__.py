"""Code shared by the search (search/) and the evaluation (eval/)."""

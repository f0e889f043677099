"""What a shopper sees: widget rendering (Jinja2 sandbox), coupons and
recommendations. The server renders; the tracker only places the HTML in a
Shadow DOM root and decides *when* to show it."""

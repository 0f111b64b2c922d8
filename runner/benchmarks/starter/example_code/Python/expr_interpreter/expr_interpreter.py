"""A small calculator language: tokenizer, precedence-climbing parser, tree-walking evaluator.

Supports integers and decimals, + - * / % ^, unary minus, comparisons (yielding 1 or 0),
variables assigned with `let`, and a few built-in functions (abs, min, max, sqrt, gcd).
"""
import math
import re

TOKEN_SPEC = [
    ("NUMBER", r"\d+(?:\.\d+)?"),
    ("NAME", r"[A-Za-z_][A-Za-z_0-9]*"),
    ("OP", r"==|!=|<=|>=|[-+*/%^(),=<>]"),
    ("SKIP", r"[ \t]+"),
    ("MISMATCH", r"."),
]
TOKEN_RE = re.compile("|".join("(?P<%s>%s)" % pair for pair in TOKEN_SPEC))

BINARY_PRECEDENCE = {
    "==": 1, "!=": 1, "<": 2, "<=": 2, ">": 2, ">=": 2,
    "+": 3, "-": 3, "*": 4, "/": 4, "%": 4, "^": 6,
}
UNARY_PRECEDENCE = 5
RIGHT_ASSOCIATIVE = {"^"}


class Token:
    def __init__(self, kind, text, pos):
        self.kind = kind
        self.text = text
        self.pos = pos

    def __repr__(self):
        return "%s(%r)" % (self.kind, self.text)


class ParseError(Exception):
    pass


class EvalError(Exception):
    pass


def tokenize(source):
    tokens = []
    for match in TOKEN_RE.finditer(source):
        kind = match.lastgroup
        text = match.group()
        if kind == "SKIP":
            continue
        if kind == "MISMATCH":
            raise ParseError("unexpected character %r at %d" % (text, match.start()))
        tokens.append(Token(kind, text, match.start()))
    tokens.append(Token("EOF", "", len(source)))
    return tokens


class Parser:
    def __init__(self, tokens):
        self.tokens = tokens
        self.index = 0

    def peek(self):
        return self.tokens[self.index]

    def advance(self):
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text):
        token = self.advance()
        if token.text != text:
            raise ParseError("expected %r but found %r at %d" % (text, token.text, token.pos))
        return token

    def parse_statement(self):
        token = self.peek()
        if token.kind == "NAME" and token.text == "let":
            self.advance()
            name = self.advance()
            if name.kind != "NAME":
                raise ParseError("expected a variable name at %d" % name.pos)
            self.expect("=")
            node = ("assign", name.text, self.parse_expression(0))
        else:
            node = self.parse_expression(0)
        if self.peek().kind != "EOF":
            raise ParseError("unexpected %r at %d" % (self.peek().text, self.peek().pos))
        return node

    def parse_expression(self, min_precedence):
        left = self.parse_unary()
        while True:
            op = self.peek().text
            precedence = BINARY_PRECEDENCE.get(op)
            if self.peek().kind != "OP" or precedence is None or precedence < min_precedence:
                break
            self.advance()
            next_min = precedence if op in RIGHT_ASSOCIATIVE else precedence + 1
            right = self.parse_expression(next_min)
            left = ("binary", op, left, right)
        return left

    def parse_unary(self):
        if self.peek().text == "-":
            self.advance()
            return ("negate", self.parse_expression(UNARY_PRECEDENCE))
        return self.parse_primary()

    def parse_primary(self):
        token = self.advance()
        if token.kind == "NUMBER":
            return ("number", float(token.text) if "." in token.text else int(token.text))
        if token.kind == "NAME":
            if self.peek().text == "(":
                self.advance()
                args = []
                if self.peek().text != ")":
                    args.append(self.parse_expression(0))
                    while self.peek().text == ",":
                        self.advance()
                        args.append(self.parse_expression(0))
                self.expect(")")
                return ("call", token.text, args)
            return ("variable", token.text)
        if token.text == "(":
            inner = self.parse_expression(0)
            self.expect(")")
            return inner
        raise ParseError("unexpected %r at %d" % (token.text or "end of input", token.pos))


BUILTINS = {
    "abs": (1, abs),
    "min": (None, min),
    "max": (None, max),
    "sqrt": (1, math.sqrt),
    "gcd": (2, math.gcd),
}


class Interpreter:
    def __init__(self):
        self.variables = {"pi": math.pi}
        self.history = []

    def evaluate(self, node):
        kind = node[0]
        if kind == "number":
            return node[1]
        if kind == "variable":
            if node[1] not in self.variables:
                raise EvalError("undefined variable %s" % node[1])
            return self.variables[node[1]]
        if kind == "negate":
            return -self.evaluate(node[1])
        if kind == "assign":
            value = self.evaluate(node[2])
            self.variables[node[1]] = value
            return value
        if kind == "call":
            return self.call_function(node[1], [self.evaluate(arg) for arg in node[2]])
        if kind == "binary":
            return self.apply_binary(node[1], self.evaluate(node[2]), self.evaluate(node[3]))
        raise EvalError("unknown node %s" % kind)

    def call_function(self, name, args):
        if name not in BUILTINS:
            raise EvalError("unknown function %s" % name)
        arity, function = BUILTINS[name]
        if arity is not None and len(args) != arity:
            raise EvalError("%s expects %d arguments, got %d" % (name, arity, len(args)))
        if not args:
            raise EvalError("%s needs at least one argument" % name)
        if name == "sqrt" and args[0] < 0:
            raise EvalError("sqrt of negative number")
        return function(*args)

    def apply_binary(self, op, left, right):
        if op == "+":
            return left + right
        elif op == "-":
            return left - right
        elif op == "*":
            return left * right
        elif op == "/":
            if right == 0:
                raise EvalError("division by zero")
            result = left / right
            return int(result) if result == int(result) else result
        elif op == "%":
            return left % right
        elif op == "^":
            return left ** right
        comparisons = {
            "==": left == right, "!=": left != right,
            "<": left < right, "<=": left <= right,
            ">": left > right, ">=": left >= right,
        }
        return 1 if comparisons[op] else 0

    def run_line(self, line):
        try:
            value = self.evaluate(Parser(tokenize(line)).parse_statement())
        except (ParseError, EvalError) as error:
            self.history.append(("error", str(error)))
            return "error: %s" % error
        self.history.append(("ok", value))
        return format_value(value)

    def run_script(self, text):
        outputs = []
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                outputs.append(self.run_line(line))
        return outputs


def format_value(value):
    if isinstance(value, float):
        text = "%.6f" % value
        return text.rstrip("0").rstrip(".")
    return str(value)


def summarize(history):
    ok = sum(1 for status, _ in history if status == "ok")
    errors = len(history) - ok
    return "%d ok, %d errors" % (ok, errors)

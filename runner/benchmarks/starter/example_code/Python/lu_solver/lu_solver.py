"""Exact linear algebra over the rationals: LU decomposition with partial pivoting.

Every entry is a fractions.Fraction, so results are exact and print the same everywhere.
PA = LU is computed once and reused to solve systems, take determinants and invert matrices.
"""
from fractions import Fraction


class SingularMatrixError(Exception):
    pass


def to_matrix(rows):
    width = len(rows[0])
    for row in rows:
        if len(row) != width:
            raise ValueError("ragged matrix: rows of length %d and %d" % (width, len(row)))
    return [[Fraction(value) for value in row] for row in rows]


def identity(n):
    return [[Fraction(1 if i == j else 0) for j in range(n)] for i in range(n)]


def transpose(matrix):
    return [list(column) for column in zip(*matrix)]


def multiply(left, right):
    if len(left[0]) != len(right):
        raise ValueError("cannot multiply %dx%d by %dx%d" % (len(left), len(left[0]), len(right), len(right[0])))
    columns = transpose(right)
    return [[sum((a * b for a, b in zip(row, column)), Fraction(0)) for column in columns] for row in left]


def format_matrix(matrix):
    cells = [[str(value) for value in row] for row in matrix]
    width = max(len(cell) for row in cells for cell in row)
    return "\n".join("[ " + "  ".join(cell.rjust(width) for cell in row) + " ]" for row in cells)


def lu_decompose(matrix):
    n = len(matrix)
    if any(len(row) != n for row in matrix):
        raise ValueError("LU decomposition needs a square matrix")
    upper = [row[:] for row in matrix]
    lower = [[Fraction(0)] * n for _ in range(n)]
    perm = list(range(n))
    swaps = 0
    for k in range(n):
        pivot_row = max(range(k, n), key=lambda i: (abs(upper[i][k]), -i))
        if upper[pivot_row][k] == 0:
            raise SingularMatrixError("matrix is singular (column %d)" % k)
        if pivot_row != k:
            upper[k], upper[pivot_row] = upper[pivot_row], upper[k]
            lower[k], lower[pivot_row] = lower[pivot_row], lower[k]
            perm[k], perm[pivot_row] = perm[pivot_row], perm[k]
            swaps += 1
        for i in range(k + 1, n):
            factor = upper[i][k] / upper[k][k]
            lower[i][k] = factor
            for j in range(k, n):
                upper[i][j] -= factor * upper[k][j]
    for i in range(n):
        lower[i][i] = Fraction(1)
    return perm, lower, upper, swaps


def permutation_matrix(perm):
    n = len(perm)
    return [[Fraction(1 if perm[i] == j else 0) for j in range(n)] for i in range(n)]


def forward_substitution(lower, b):
    y = []
    for i in range(len(b)):
        total = b[i] - sum((lower[i][j] * y[j] for j in range(i)), Fraction(0))
        y.append(total / lower[i][i])
    return y


def back_substitution(upper, y):
    n = len(y)
    x = [Fraction(0)] * n
    for i in range(n - 1, -1, -1):
        total = y[i] - sum((upper[i][j] * x[j] for j in range(i + 1, n)), Fraction(0))
        x[i] = total / upper[i][i]
    return x


def solve(matrix, b):
    perm, lower, upper, _ = lu_decompose(matrix)
    permuted = [Fraction(b[p]) for p in perm]
    return back_substitution(upper, forward_substitution(lower, permuted))


def determinant(matrix):
    try:
        _, _, upper, swaps = lu_decompose(matrix)
    except SingularMatrixError:
        return Fraction(0)
    result = Fraction(-1 if swaps % 2 else 1)
    for i in range(len(upper)):
        result *= upper[i][i]
    return result


def inverse(matrix):
    n = len(matrix)
    perm, lower, upper, _ = lu_decompose(matrix)
    columns = []
    for unit in identity(n):
        permuted = [unit[p] for p in perm]
        columns.append(back_substitution(upper, forward_substitution(lower, permuted)))
    return transpose(columns)


def residual(matrix, x, b):
    product = multiply(matrix, [[value] for value in x])
    return [product[i][0] - Fraction(b[i]) for i in range(len(b))]


def report(rows, b):
    matrix = to_matrix(rows)
    print("A =")
    print(format_matrix(matrix))
    try:
        perm, lower, upper, swaps = lu_decompose(matrix)
    except SingularMatrixError as error:
        print("singular:", error)
        print("det(A) =", determinant(matrix))
        return None
    print("row order", perm, "after", swaps, "swap(s)")
    print("L =")
    print(format_matrix(lower))
    print("U =")
    print(format_matrix(upper))
    check = multiply(permutation_matrix(perm), matrix) == multiply(lower, upper)
    print("PA == LU:", check)
    print("det(A) =", determinant(matrix))
    x = solve(matrix, b)
    print("x =", " ".join(str(value) for value in x))
    print("residual zero:", all(value == 0 for value in residual(matrix, x, b)))
    print("A^-1 =")
    print(format_matrix(inverse(matrix)))
    return x

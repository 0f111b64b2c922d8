import junit.framework.TestCase;
import java.util.Map;
import java.util.TreeMap;

/**
 * A sparse matrix of doubles that stores only its non-zero entries, row by row, in sorted
 * maps; zero is never stored, so the entry count is the true number of non-zeros.
 */
class SparseMatrix {

  private final int rows;
  private final int cols;
  private final TreeMap<Integer, TreeMap<Integer, Double>> data = new TreeMap<Integer, TreeMap<Integer, Double>>();

  public SparseMatrix(int rows, int cols) {
    if (rows <= 0 || cols <= 0) {
      throw new IllegalArgumentException("bad shape " + rows + "x" + cols);
    }
    this.rows = rows;
    this.cols = cols;
  }

  public static SparseMatrix fromDense(double[][] dense) {
    SparseMatrix result = new SparseMatrix(dense.length, dense[0].length);
    for (int i = 0; i < dense.length; i++) {
      for (int j = 0; j < dense[i].length; j++) {
        result.set(i, j, dense[i][j]);
      }
    }
    return result;
  }

  public int getRows() {
    return rows;
  }

  public int getCols() {
    return cols;
  }

  private void checkIndex(int i, int j) {
    if (i < 0 || i >= rows || j < 0 || j >= cols) {
      throw new IndexOutOfBoundsException("(" + i + ", " + j + ") outside " + rows + "x" + cols);
    }
  }

  public double get(int i, int j) {
    checkIndex(i, j);
    TreeMap<Integer, Double> row = data.get(i);
    if (row == null) {
      return 0.0;
    }
    Double value = row.get(j);
    return value == null ? 0.0 : value;
  }

  public void set(int i, int j, double value) {
    checkIndex(i, j);
    TreeMap<Integer, Double> row = data.get(i);
    if (value == 0.0) {
      if (row != null) {
        row.remove(j);
        if (row.isEmpty()) {
          data.remove(i);
        }
      }
      return;
    }
    if (row == null) {
      row = new TreeMap<Integer, Double>();
      data.put(i, row);
    }
    row.put(j, value);
  }

  public int nonZeros() {
    int count = 0;
    for (TreeMap<Integer, Double> row : data.values()) {
      count += row.size();
    }
    return count;
  }

  public SparseMatrix transpose() {
    SparseMatrix result = new SparseMatrix(cols, rows);
    for (Map.Entry<Integer, TreeMap<Integer, Double>> row : data.entrySet()) {
      for (Map.Entry<Integer, Double> entry : row.getValue().entrySet()) {
        result.set(entry.getKey(), row.getKey(), entry.getValue());
      }
    }
    return result;
  }

  public SparseMatrix add(SparseMatrix other) {
    if (rows != other.rows || cols != other.cols) {
      throw new IllegalArgumentException("shape mismatch in add");
    }
    SparseMatrix result = new SparseMatrix(rows, cols);
    for (Map.Entry<Integer, TreeMap<Integer, Double>> row : data.entrySet()) {
      for (Map.Entry<Integer, Double> entry : row.getValue().entrySet()) {
        result.set(row.getKey(), entry.getKey(), entry.getValue());
      }
    }
    for (Map.Entry<Integer, TreeMap<Integer, Double>> row : other.data.entrySet()) {
      for (Map.Entry<Integer, Double> entry : row.getValue().entrySet()) {
        int i = row.getKey();
        int j = entry.getKey();
        result.set(i, j, result.get(i, j) + entry.getValue());
      }
    }
    return result;
  }

  public SparseMatrix multiply(SparseMatrix other) {
    if (cols != other.rows) {
      throw new IllegalArgumentException("shape mismatch in multiply");
    }
    SparseMatrix result = new SparseMatrix(rows, other.cols);
    for (Map.Entry<Integer, TreeMap<Integer, Double>> row : data.entrySet()) {
      int i = row.getKey();
      for (Map.Entry<Integer, Double> left : row.getValue().entrySet()) {
        TreeMap<Integer, Double> otherRow = other.data.get(left.getKey());
        if (otherRow == null) {
          continue;
        }
        for (Map.Entry<Integer, Double> right : otherRow.entrySet()) {
          int j = right.getKey();
          result.set(i, j, result.get(i, j) + left.getValue() * right.getValue());
        }
      }
    }
    return result;
  }

  public double[] multiplyVector(double[] vector) {
    if (vector.length != cols) {
      throw new IllegalArgumentException("vector length " + vector.length + " != " + cols);
    }
    double[] result = new double[rows];
    for (Map.Entry<Integer, TreeMap<Integer, Double>> row : data.entrySet()) {
      double sum = 0.0;
      for (Map.Entry<Integer, Double> entry : row.getValue().entrySet()) {
        sum += entry.getValue() * vector[entry.getKey()];
      }
      result[row.getKey()] = sum;
    }
    return result;
  }

  public double trace() {
    double sum = 0.0;
    for (int i = 0; i < Math.min(rows, cols); i++) {
      sum += get(i, i);
    }
    return sum;
  }

  public double[][] toDense() {
    double[][] dense = new double[rows][cols];
    for (Map.Entry<Integer, TreeMap<Integer, Double>> row : data.entrySet()) {
      for (Map.Entry<Integer, Double> entry : row.getValue().entrySet()) {
        dense[row.getKey()][entry.getKey()] = entry.getValue();
      }
    }
    return dense;
  }
}

public class SparseMatrixTester extends TestCase {

  private static final double EPS = 1e-9;

  private void checkDense(double[][] expected, SparseMatrix actual) {
    assertEquals(expected.length, actual.getRows());
    assertEquals(expected[0].length, actual.getCols());
    for (int i = 0; i < expected.length; i++) {
      for (int j = 0; j < expected[i].length; j++) {
        assertEquals("entry (" + i + ", " + j + ")", expected[i][j], actual.get(i, j), EPS);
      }
    }
  }

  public void testSetGetAndZeros() {
    SparseMatrix m = new SparseMatrix(3, 4);
    m.set(0, 1, 2.5);
    m.set(2, 3, -1.0);
    m.set(1, 1, 0.0);
    assertEquals(2, m.nonZeros());
    assertEquals(2.5, m.get(0, 1), EPS);
    assertEquals(0.0, m.get(1, 2), EPS);
    m.set(0, 1, 0.0);
    assertEquals(1, m.nonZeros());
    assertEquals(0.0, m.get(0, 1), EPS);
  }

  public void testFromDenseRoundTrip() {
    double[][] dense = {{1, 0, 0}, {0, 0, 3}, {4, 5, 0}};
    SparseMatrix m = SparseMatrix.fromDense(dense);
    assertEquals(4, m.nonZeros());
    checkDense(dense, m);
    double[][] back = m.toDense();
    assertEquals(5.0, back[2][1], EPS);
    assertEquals(0.0, back[1][1], EPS);
  }

  public void testTranspose() {
    SparseMatrix m = SparseMatrix.fromDense(new double[][] {{1, 2, 0}, {0, 0, 6}});
    checkDense(new double[][] {{1, 0}, {2, 0}, {0, 6}}, m.transpose());
    assertEquals(3, m.transpose().nonZeros());
  }

  public void testAddCancelsToZero() {
    SparseMatrix a = SparseMatrix.fromDense(new double[][] {{1, 2}, {0, -3}});
    SparseMatrix b = SparseMatrix.fromDense(new double[][] {{-1, 1}, {4, 3}});
    SparseMatrix sum = a.add(b);
    checkDense(new double[][] {{0, 3}, {4, 0}}, sum);
    assertEquals(2, sum.nonZeros());
  }

  public void testMultiply() {
    SparseMatrix a = SparseMatrix.fromDense(new double[][] {{1, 0, 2}, {0, 3, 0}});
    SparseMatrix b = SparseMatrix.fromDense(new double[][] {{4, 0}, {0, 5}, {6, 0}});
    checkDense(new double[][] {{16, 0}, {0, 15}}, a.multiply(b));
    checkDense(new double[][] {{4, 0, 8}, {0, 15, 0}, {6, 0, 12}}, b.multiply(a));
    SparseMatrix halfEmpty = SparseMatrix.fromDense(new double[][] {{1, 1}, {0, 0}});
    SparseMatrix row = SparseMatrix.fromDense(new double[][] {{2, 3}});
    checkDense(new double[][] {{2, 2}}, row.multiply(halfEmpty));
  }

  public void testMultiplyVectorAndTrace() {
    SparseMatrix m = SparseMatrix.fromDense(new double[][] {{2, 0, 1}, {0, 0, 0}, {0, 4, 3}});
    double[] result = m.multiplyVector(new double[] {1, 2, 3});
    assertEquals(5.0, result[0], EPS);
    assertEquals(0.0, result[1], EPS);
    assertEquals(17.0, result[2], EPS);
    assertEquals(5.0, m.trace(), EPS);
  }

  public void testShapeErrors() {
    SparseMatrix a = new SparseMatrix(2, 3);
    try {
      a.multiply(new SparseMatrix(2, 3));
      fail("multiply should reject 2x3 * 2x3");
    } catch (IllegalArgumentException expected) {
      assertTrue(expected.getMessage().contains("multiply"));
    }
    try {
      a.add(new SparseMatrix(3, 2));
      fail("add should reject 2x3 + 3x2");
    } catch (IllegalArgumentException expected) {
      assertTrue(expected.getMessage().contains("add"));
    }
    try {
      a.multiplyVector(new double[] {1, 2});
      fail("multiplyVector should reject a vector of length 2");
    } catch (IllegalArgumentException expected) {
      assertTrue(expected.getMessage().contains("length 2"));
    }
    try {
      a.get(2, 0);
      fail("get should reject row 2");
    } catch (IndexOutOfBoundsException expected) {
      assertTrue(expected.getMessage().contains("(2, 0)"));
    }
    try {
      new SparseMatrix(0, 1);
      fail("shape 0x1 should be rejected");
    } catch (IllegalArgumentException expected) {
      assertTrue(expected.getMessage().contains("0x1"));
    }
  }

  public void testLargeIdentityProduct() {
    int n = 200;
    SparseMatrix identity = new SparseMatrix(n, n);
    SparseMatrix band = new SparseMatrix(n, n);
    for (int i = 0; i < n; i++) {
      identity.set(i, i, 1.0);
      band.set(i, i, 2.0);
      if (i + 1 < n) {
        band.set(i, i + 1, -1.0);
      }
    }
    SparseMatrix product = identity.multiply(band);
    assertEquals(2 * n - 1, product.nonZeros());
    assertEquals(2.0 * n, product.trace(), EPS);
    assertEquals(-1.0, product.get(10, 11), EPS);
    assertEquals(0.0, product.get(11, 10), EPS);
  }
}

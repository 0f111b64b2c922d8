// The Java fast path: compile the tester in-process and run the JUnit console launcher in the
// same JVM, so that each check pays for one JVM start instead of two (javac, then java).
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;

public class RunnerCompileAndTest {
    public static void main(String[] args) throws Exception {
        // args: class path, source file, tester class
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        int rc = javac.run(null, null, null,
                "-nowarn", "-proc:none", "-encoding", "UTF-8", "-cp", args[0], "-d", ".", args[1]);
        if (rc != 0) {
            System.err.println("runner: compilation failed");
            System.exit(3);
        }
        org.junit.platform.console.ConsoleLauncher.main(new String[] {
            "--disable-banner", "--disable-ansi-colors", "--details=summary", "--select-class", args[2]});
    }
}
